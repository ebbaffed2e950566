#!/usr/bin/env bash
# Starts a private PulseAudio daemon with two null sinks, for tolk's real-time audio tests on a
# machine without a sound card (CI, containers). Developers can run it too:
#
#   eval "$(tests/audio/pulse-up.sh)"     # prints the exports to use
#
#   speaker           null sink, the default output: tolk.speaker plays here; the tests record
#                     it back from `speaker.monitor` with parecord
#   mic_feed          null sink the tests play a known WAV into with paplay; its monitor
#                     `mic_feed.monitor` is the default input, which tolk.mic captures
#
# Keep-alive readers on both monitors stop an idle null sink from sleeping (without them every
# new stream stalls 1-2 s at start). Idempotent: a running daemon in the same directory is
# reused. Stop it with tests/audio/pulse-down.sh. Runs as root too (PulseAudio warns, works).
set -euo pipefail

dir="${TOLK_PULSE_DIR:-${TMPDIR:-/tmp}/tolk-pulse}"
mkdir -p "$dir"
chmod 700 "$dir"
export XDG_RUNTIME_DIR="$dir"
export PULSE_SERVER="unix:$dir/pulse/native"

exports() {
    echo "export XDG_RUNTIME_DIR='$dir'"
    echo "export PULSE_SERVER='unix:$dir/pulse/native'"
}

if pactl info >/dev/null 2>&1; then
    exports
    exit 0
fi
for tool in pulseaudio pactl parec paplay parecord; do
    command -v "$tool" >/dev/null || { echo "pulse-up: $tool is missing (apt-get install pulseaudio pulseaudio-utils)" >&2; exit 1; }
done

cat > "$dir/ci.pa" <<'PA'
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=speaker rate=48000 sink_properties=device.description=speaker
load-module module-null-sink sink_name=mic_feed rate=48000 sink_properties=device.description=mic_feed
set-default-sink speaker
set-default-source mic_feed.monitor
PA
pulseaudio -n -F "$dir/ci.pa" --daemonize=no --exit-idle-time=-1 --use-pid-file=no \
    --log-target="file:$dir/pulse.log" >/dev/null 2>&1 &
echo $! > "$dir/daemon.pid"
for _ in $(seq 1 100); do
    pactl info >/dev/null 2>&1 && break
    sleep 0.05
done
pactl info >/dev/null 2>&1 || { echo "pulse-up: the daemon did not come up; see $dir/pulse.log" >&2; exit 1; }
for mon in speaker.monitor mic_feed.monitor; do
    nohup parec --latency-msec=10 -d "$mon" >/dev/null 2>&1 &
    echo $! >> "$dir/readers.pid"
done
# Let the null sinks settle into real time before anyone measures anything.
sleep 1
exports
