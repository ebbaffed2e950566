#!/usr/bin/env bash
# Round-trip latency mic → speaker through `tolk run` with a floor route, measured outside tolk:
# a private PulseAudio daemon (tests/audio/pulse-up.sh); tolk.mic captures `mic_feed.monitor`,
# a floor route plays it on tolk.speaker (`speaker`); two PulseAudio loopbacks copy
# mic_feed.monitor to the left and speaker.monitor to the right channel of a third null sink,
# `probe`, recorded with parecord. Tone bursts are played into mic_feed; the latency of each
# burst is its onset on the right minus its onset on the left (both paths through identical
# loopbacks, so their own delay cancels). Not part of the test suite (a figure, not an assertion).
#
#   tests/audio/latency.sh [SECONDS=30] [BUFFER_FRAMES=480]
#
# Needs `cargo build --release --workspace` (or TOLK_BIN=path/to/tolk) and python3. Prints median, p10, p90 of the bursts
# and the xrun lines tolk logged.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-30}
buf=${2:-480}
work=$(mktemp -d)
eval "$(tests/audio/pulse-up.sh)"
pactl load-module module-null-sink sink_name=probe rate=48000 channels=2 channel_map=left,right \
    sink_properties=device.description=probe >"$work/m1"
pactl load-module module-loopback source=mic_feed.monitor sink=probe latency_msec=5 \
    channels=1 channel_map=left sink_input_properties=media.name=probe-left >"$work/m2"
pactl load-module module-loopback source=speaker.monitor sink=probe latency_msec=5 \
    channels=1 channel_map=right sink_input_properties=media.name=probe-right >"$work/m3"
cleanup() {
    for m in "$work"/m*; do pactl unload-module "$(cat "$m")" 2>/dev/null || true; done
    kill "${rec:-0}" "${tolk:-0}" 2>/dev/null || true
}
trap cleanup EXIT

python3 - "$work/bursts.wav" "$secs" <<'PY'
import math, struct, sys, wave
path, secs = sys.argv[1], int(sys.argv[2])
rate = 48000
w = wave.open(path, "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)
frames = bytearray()
for i in range(rate * secs):
    t = i / rate
    on = (t % 1.0) < 0.03 and t > 1.0
    v = int(0.5 * 32767 * math.sin(2 * math.pi * 1000 * t)) if on else 0
    frames += struct.pack("<h", v)
w.writeframes(bytes(frames)); w.close()
PY

cat >"$work/room.toml" <<TOML
[[source]]
id = "mic"
plugin = "tolk.mic"
language = "en"
[source.config]
device = "mic_feed.monitor"
buffer_frames = $buf

[[route]]
source = "mic"
to = ["floor"]
sinks = ["spk"]

[[sink]]
id = "spk"
plugin = "tolk.speaker"
[sink.config]
device = "speaker"
buffer_frames = $buf
TOML

"${TOLK_BIN:-target/release/tolk}" run "$work/room.toml" 2>"$work/tolk.log" &
tolk=$!
sleep 2
parecord --latency-msec=10 -d probe.monitor --channels=2 --file-format=wav "$work/probe.wav" &
rec=$!
sleep 1
paplay --latency-msec=10 -d mic_feed "$work/bursts.wav"
sleep 1
kill -INT "$rec"; wait "$rec" 2>/dev/null || true
kill -INT "$tolk"; wait "$tolk" 2>/dev/null || true
rec=0; tolk=0

python3 - "$work/probe.wav" <<'PY'
import struct, sys, wave, statistics
w = wave.open(sys.argv[1]); rate = w.getframerate(); n = w.getnframes(); ch = w.getnchannels()
data = struct.unpack("<%dh" % (n * ch), w.readframes(n))
left, right = data[0::ch], data[1::ch]
def onsets(x):
    out, i, thr = [], 0, 3000
    while i < len(x):
        if abs(x[i]) > thr:
            out.append(i); i += int(0.5 * rate)
        else:
            i += 1
    return out
a, b = onsets(left), onsets(right)
lat = []
for t in a:
    later = [u - t for u in b if 0 <= u - t < rate // 2]
    if later: lat.append(later[0] * 1000 / rate)
if not lat:
    print("latency: no bursts matched (left %d, right %d)" % (len(a), len(b))); sys.exit(1)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print("latency mic → speaker through tolk (floor route): median %.1f ms, p10 %.1f, p90 %.1f, %d bursts (%d played)"
      % (statistics.median(lat), q(0.1), q(0.9), len(lat), len(a)))
PY
grep -iE "xrun|overrun|underrun" "$work/tolk.log" | tail -3 || true
