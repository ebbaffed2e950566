#!/usr/bin/env bash
# tolk's whole test suite, as README.md gives it and CI runs it: installs the Debian packages
# it needs (scripts/deps.sh) and the offline engine's models (scripts/models.sh), starts the
# private PulseAudio test daemon (tests/audio/pulse-up.sh), builds the workspace with the offline
# engine (feature tolk-core/offline; the tests load the real plugin libraries and run the real
# `tolk`, which `cargo test` does not build), runs every test (the real-time device tests last,
# alone), and stops the daemon again.
# Extra arguments go to `cargo test` (then it runs once, with them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/models.sh
eval "$(tests/audio/pulse-up.sh)"
trap 'tests/audio/pulse-down.sh >/dev/null 2>&1 || true' EXIT
features=(--features tolk-tests/offline)
cargo build --workspace "${features[@]}"
if [ "$#" -gt 0 ]; then
  cargo test --workspace "${features[@]}" "$@"
  exit
fi
# The device tests play and record through PulseAudio in real time: they run last, on their
# own, so that the rest of the suite (two tests at a time on a 2-core machine) does not starve
# the audio daemon while they listen.
cargo test --workspace "${features[@]}" -- --skip devices::issue_
cargo test -p tolk-tests "${features[@]}" --test integration -- devices::issue_ --test-threads=1
