#!/usr/bin/env python3
"""The official `openai` Python SDK against `tolk serve`.

Connects with the SDK's own clients (pointed at the server through `websocket_base_url` on the
client constructor) on every path tolk serves — GA, Realtime Translation, Azure GA, Azure
preview and, if the installed SDK still has it, the legacy beta (`client.beta.realtime`) —
drives a session (session.update, real speech from configs/samples/keynote-en.wav, a VAD turn,
responses, item operations, a deliberate error), and validates EVERY event the server sends
against the SDK's pydantic types with a strict tagged union (`Field(discriminator="type")`), so
a wrong event name is one `union_tag_invalid` error and a wrong field shape fails loudly.
Unknown extra fields (pydantic would silently allow them) are failures too, except the
read-only session fields the real service also sends (`id`, `object`, `expires_at`).

Usage: sdk_compat.py --url ws://127.0.0.1:PORT [--token T] [--wav FILE]
Prints one line per check and a closing `sdk: N passed, M failed`; exits 1 on any failure.
"""

import argparse
import asyncio
import base64
import json
import sys
import typing
import wave
from typing import Annotated, Union

import openai
import pydantic
from openai import AsyncAzureOpenAI, AsyncOpenAI
from openai.types.realtime import RealtimeServerEvent, RealtimeTranslationServerEvent
from pydantic import BaseModel, Field, TypeAdapter

try:
    from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
except ImportError:  # newer SDKs may drop the beta types
    BetaServerEvent = None

TIMEOUT = 15.0
ALLOWED_EXTRA = {"id", "object", "expires_at"}


def strict(union):
    """The SDK union rebuilt as a pydantic tagged union on `type`."""
    inner = typing.get_args(union)[0] if typing.get_origin(union) is Annotated else union
    return TypeAdapter(Annotated[Union[typing.get_args(inner)], Field(discriminator="type")])


GA = strict(RealtimeServerEvent)
TRANSLATION = strict(RealtimeTranslationServerEvent)
BETA = strict(BetaServerEvent) if BetaServerEvent is not None else None


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.events = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
            print(f"ok    {what}")
        else:
            self.failed += 1
            print(f"FAIL  {what}")
        return ok


R = Report()


def extras(model, path="event"):
    """Paths of fields pydantic accepted as extras (not in the SDK's types)."""
    out = []
    if isinstance(model, BaseModel):
        for k in (model.model_extra or {}):
            if not (k in ALLOWED_EXTRA and path.endswith("session")):
                out.append(f"{path}.{k}")
        for name in type(model).model_fields:
            out += extras(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, list):
        for i, x in enumerate(model):
            out += extras(x, f"{path}[{i}]")
    return out


def validate(adapter, raw, label):
    """Validates one raw server event; returns it as a dict."""
    ev = json.loads(raw)
    R.events += 1
    try:
        model = adapter.validate_python(ev)
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        R.check(False, f"{label}: {ev.get('type')} does not validate: {first['type']} at {first['loc']}: {first['msg']}")
        return ev
    bad = extras(model)
    R.check(not bad, f"{label}: {ev['type']} -> {type(model).__name__}" + (f" (unknown fields {bad})" if bad else ""))
    return ev


async def recv(conn, adapter, label):
    raw = await asyncio.wait_for(conn.recv_bytes(), TIMEOUT)
    return validate(adapter, raw, label)


async def until(conn, adapter, label, ty):
    evs = []
    while True:
        ev = await recv(conn, adapter, label)
        evs.append(ev)
        if ev["type"] == ty:
            return evs


def keynote(path):
    with wave.open(path) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        return w.readframes(w.getnframes())


def speech(pcm, ms, silence_ms=0):
    """`ms` of the recording from its first loud sample, then silence (PCM16 bytes)."""
    samples = memoryview(pcm).cast("h")
    first = next(i for i, s in enumerate(samples) if abs(s) > 300)
    return bytes(pcm[2 * first: 2 * (first + 24 * ms)]) + bytes(48 * silence_ms)


def chunks(pcm, ms):
    step = 48 * ms
    for i in range(0, len(pcm), step):
        yield base64.b64encode(pcm[i:i + step]).decode()


async def ga_session(client, label, pcm, model="gpt-realtime"):
    async with client.realtime.connect(model=model) as conn:
        created = await recv(conn, GA, label)
        R.check(created["type"] == "session.created" and created["session"]["type"] == "realtime", f"{label}: session.created first")
        await recv(conn, GA, label)
        await conn.session.update(session={
            "type": "realtime", "instructions": "Target language: es", "output_modalities": ["audio"],
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": 24000},
                          "transcription": {"model": "whisper-1", "language": "en"},
                          "turn_detection": {"type": "server_vad", "silence_duration_ms": 300, "interrupt_response": False}},
                "output": {"voice": "marin", "format": {"type": "audio/pcm", "rate": 24000}},
            },
        })
        upd = (await until(conn, GA, label, "session.updated"))[-1]
        R.check(upd["session"]["audio"]["output"]["voice"] == "marin", f"{label}: session.updated has the new voice")

        # A VAD turn on real speech; the server answers it on its own.
        for b64 in chunks(speech(pcm, 2500, 800), 100):
            await conn.input_audio_buffer.append(audio=b64)
        # Events are handled in order: the error for this sentinel follows every VAD event of
        # the audio; then wait until each turn's response is done.
        await conn.send({"type": "conversation.item.retrieve", "event_id": "sentinel", "item_id": "none"})
        evs, sentinel = [], False
        while True:
            ev = await recv(conn, GA, label)
            evs.append(ev)
            sentinel |= ev["type"] == "error" and ev["error"].get("event_id") == "sentinel"
            count = lambda t: sum(e["type"] == t for e in evs)
            if sentinel and count("response.done") == count("input_audio_buffer.speech_stopped") > 0:
                break
        evs = [e for e in evs if e["type"] != "error"]
        types = [e["type"] for e in evs]
        R.check("input_audio_buffer.speech_started" in types and "input_audio_buffer.speech_stopped" in types, f"{label}: VAD turn detected")
        done = [e for e in evs if e["type"] == "response.done"][-1]
        R.check("response.output_audio.delta" in types and done["response"]["status"] == "completed", f"{label}: audio response completed")
        usage = done["response"]["usage"]
        R.check(usage["input_token_details"]["audio_tokens"] > 0 and usage["output_token_details"]["audio_tokens"] > 0, f"{label}: usage counts audio")
        answer_id = done["response"]["output"][0]["id"]

        # A deliberate error: the client's event_id comes back.
        await conn.send({"type": "session.update", "event_id": "evt_bad", "session": {"type": "realtime", "voise": "x"}})
        err = (await until(conn, GA, label, "error"))[-1]["error"]
        R.check(err["code"] == "unknown_parameter" and err["param"] == "session.voise" and err["event_id"] == "evt_bad", f"{label}: error names param and event_id")

        # Items: create text, text-only response, retrieve, truncate (bad and good), delete.
        await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hola"}]})
        await until(conn, GA, label, "conversation.item.done")
        await conn.response.create(response={"output_modalities": ["text"]})
        evs = await until(conn, GA, label, "response.done")
        R.check(any(e["type"] == "response.output_text.delta" for e in evs), f"{label}: text response")
        await conn.conversation.item.retrieve(item_id=answer_id)
        got = (await until(conn, GA, label, "conversation.item.retrieved"))[-1]
        R.check(got["item"]["content"][0].get("audio"), f"{label}: retrieved item carries audio")
        await conn.conversation.item.truncate(item_id=answer_id, content_index=0, audio_end_ms=999_999)
        err = (await until(conn, GA, label, "error"))[-1]["error"]
        R.check("is already shorter than" in err["message"], f"{label}: truncate beyond the audio is refused")
        await conn.conversation.item.truncate(item_id=answer_id, content_index=0, audio_end_ms=200)
        await until(conn, GA, label, "conversation.item.truncated")
        await conn.conversation.item.delete(item_id=answer_id)
        await until(conn, GA, label, "conversation.item.deleted")
        await conn.response.cancel()
        err = (await until(conn, GA, label, "error"))[-1]["error"]
        R.check(err["code"] == "response_cancel_not_active", f"{label}: cancel with nothing active")
        # Expiry by fault injection: session.updated, then session_expired.
        await conn.send({"type": "tolk.fault", "expire_after_s": 0.3})
        evs = await until(conn, GA, label, "error")
        R.check(evs[-1]["error"]["code"] == "session_expired", f"{label}: session_expired")


async def beta_session(conn, label, pcm):
    created = await recv(conn, BETA, label)
    R.check(created["type"] == "session.created" and "modalities" in created["session"], f"{label}: flat beta session")
    await recv(conn, BETA, label)
    await conn.send({"type": "session.update", "session": {
        "modalities": ["text", "audio"], "instructions": "Target language: fr", "voice": "alloy",
        "turn_detection": None, "input_audio_transcription": {"model": "whisper-1"},
    }})
    await until(conn, BETA, label, "session.updated")
    for b64 in chunks(speech(pcm, 1500), 100):
        await conn.send({"type": "input_audio_buffer.append", "audio": b64})
    await conn.send({"type": "input_audio_buffer.commit"})
    await conn.send({"type": "response.create"})
    evs = await until(conn, BETA, label, "response.done")
    types = [e["type"] for e in evs]
    R.check("response.audio.delta" in types and "conversation.item.created" in types, f"{label}: beta event names")
    R.check(not any("output_audio" in t for t in types), f"{label}: no GA names on the beta path")


async def translation_session(client, label, pcm):
    async with client.realtime.translations.connect(model="gpt-realtime-translate") as conn:
        created = await recv(conn, TRANSLATION, label)
        R.check(created["session"]["type"] == "translation", f"{label}: translation session")
        await conn.send({"type": "session.update", "session": {"audio": {"output": {"language": "de"}, "input": {"transcription": {"model": "gpt-realtime-whisper"}}}}})
        await until(conn, TRANSLATION, label, "session.updated")
        for b64 in chunks(speech(pcm, 3000, 600), 200):
            await conn.send({"type": "session.input_audio_buffer.append", "audio": b64})
        await conn.send({"type": "session.close"})
        evs = await until(conn, TRANSLATION, label, "session.closed")
        types = [e["type"] for e in evs]
        R.check("session.output_audio.delta" in types and "session.output_transcript.delta" in types, f"{label}: output streamed")
        text = "".join(e["delta"] for e in evs if e["type"] == "session.output_transcript.delta")
        R.check(text.startswith("[de] utterance 1:"), f"{label}: target language from audio.output.language")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="ws://127.0.0.1:PORT")
    ap.add_argument("--token", default="sk-tolk-test")
    ap.add_argument("--wav", default="configs/samples/keynote-en.wav")
    a = ap.parse_args()
    print(f"openai {openai.__version__} | pydantic {pydantic.__version__} | python {sys.version.split()[0]}")
    pcm = keynote(a.wav)

    client = AsyncOpenAI(api_key=a.token, websocket_base_url=f"{a.url}/v1")
    await ga_session(client, "GA", pcm)
    await translation_session(client, "translation", pcm)
    if BETA is not None and hasattr(client, "beta") and hasattr(client.beta, "realtime"):
        async with client.beta.realtime.connect(model="gpt-4o-realtime-preview") as conn:
            await beta_session(conn, "beta", pcm)
    else:
        print("note  this SDK has no beta realtime client; beta path not exercised")
    # Azure GA: the deployment is the model; auth by api-key header.
    azure_ga = AsyncOpenAI(api_key="not-this-one", websocket_base_url=f"{a.url}/openai/v1", default_headers={"api-key": a.token})
    await ga_session(azure_ga, "Azure GA", pcm, model="my-deployment")
    # Azure preview (api-version + deployment, beta-shaped events), the SDK's Azure client.
    azure = AsyncAzureOpenAI(api_key=a.token, api_version="2025-04-01-preview", azure_endpoint="https://example.invalid",
                             websocket_base_url=f"{a.url}/openai")
    if BETA is not None:
        realtime = azure.beta.realtime if hasattr(azure, "beta") and hasattr(azure.beta, "realtime") else azure.realtime
        async with realtime.connect(model="gpt-4o-realtime-preview") as conn:
            await beta_session(conn, "Azure preview", pcm)
    # A wrong key is refused at the handshake.
    bad = AsyncOpenAI(api_key="wrong", websocket_base_url=f"{a.url}/v1")
    try:
        async with bad.realtime.connect(model="gpt-realtime") as conn:
            await asyncio.wait_for(conn.recv_bytes(), TIMEOUT)
        R.check(False, "wrong key refused")
    except Exception as e:  # websockets.InvalidStatus
        R.check("401" in str(e), f"wrong key refused ({type(e).__name__})")

    print(f"events validated: {R.events}")
    print(f"sdk: {R.passed} passed, {R.failed} failed")
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
