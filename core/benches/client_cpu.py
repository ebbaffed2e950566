#!/usr/bin/env python3
"""The Python side of core/benches/client_cpu.rs: N Realtime sessions through the official
`openai` SDK, each sending a speech WAV (24 kHz mono 16-bit, looped) in real time in 20 ms
appends and reading every server event, as a minimal SDK client does: the SDK parses each
event into its pydantic type, audio deltas are base64-decoded and kept, transcripts kept.

The same traffic as `tolk run` with one route into N languages on the same server: one
session per target language, server VAD, input transcription, responses created by the
server. Runs until SIGTERM (the bench samples this process's CPU time first), then prints
`received: S s of audio, T transcripts` over all sessions and exits.

Usage: client_cpu.py --url ws://127.0.0.1:PORT --sessions N --wav FILE
Prints `ready` once every session is set up.
"""

import argparse
import asyncio
import base64
import signal
import time
import wave

from openai import AsyncOpenAI

LANGS = ["es", "fr", "de", "it", "pt", "nl", "sv", "pl", "ru", "ja", "ko", "zh", "ar", "hi", "tr", "cs"]
BLOCK = 480  # 20 ms at 24 kHz


TOTALS = {"audio": 0, "transcripts": 0}


async def session(client, lang, pcm, ready):
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={
            "type": "realtime",
            "instructions": f"Interpret into the target language.\nTarget language: {lang}",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": {"model": "gpt-4o-transcribe"},
                    # tolk's defaults: a new turn does not cut the running response off.
                    "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                       "silence_duration_ms": 500, "create_response": True,
                                       "interrupt_response": False},
                },
                "output": {"format": {"type": "audio/pcm", "rate": 24000}},
            },
        })
        received = bytearray()
        transcripts = []

        async def read():
            async for event in conn:
                if event.type == "response.output_audio.delta":
                    audio = base64.b64decode(event.delta)
                    received.extend(audio)
                    TOTALS["audio"] += len(audio)
                elif event.type == "response.output_audio_transcript.done":
                    transcripts.append(event.transcript)
                    TOTALS["transcripts"] += 1
                elif event.type == "session.updated":
                    ready.set()

        reader = asyncio.create_task(read())
        await ready.wait()
        start = time.monotonic()
        n = 0
        pos = 0
        step = BLOCK * 2
        while True:
            due = start + n * 0.02
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = pcm[pos:pos + step]
            pos = (pos + step) % (len(pcm) - len(pcm) % step)
            await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            n += 1
            if reader.done():
                reader.result()
                return


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--wav", required=True)
    a = p.parse_args()
    with wave.open(a.wav) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2), "need 24 kHz mono 16-bit"
        pcm = w.readframes(w.getnframes())
    client = AsyncOpenAI(api_key="sk-bench", websocket_base_url=f"{a.url}/v1")
    events = [asyncio.Event() for _ in range(a.sessions)]
    tasks = [asyncio.create_task(session(client, LANGS[i % len(LANGS)], pcm, events[i])) for i in range(a.sessions)]
    await asyncio.gather(*(e.wait() for e in events))
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    done = asyncio.create_task(stop.wait())
    finished, _ = await asyncio.wait([done, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for t in finished:
        if t is not done:
            t.result()  # a session that ended on its own: show why
    print(f"received: {TOTALS['audio'] / 48000:.1f} s of audio, {TOTALS['transcripts']} transcripts", flush=True)


asyncio.run(main())
