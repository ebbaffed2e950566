#!/usr/bin/env bash
# tolk's whole test suite, as README.md gives it and CI runs it: installs the Debian packages
# it needs (scripts/deps.sh), starts the private PulseAudio test daemon (tests/audio/pulse-up.sh),
# builds the workspace (the tests load the real plugin libraries, which `cargo test` does not
# build), runs every test, and stops the daemon again. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
eval "$(tests/audio/pulse-up.sh)"
trap 'tests/audio/pulse-down.sh >/dev/null 2>&1 || true' EXIT
cargo build --workspace
cargo test --workspace "$@"
