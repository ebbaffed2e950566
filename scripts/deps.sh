#!/usr/bin/env bash
# Installs the Debian packages tolk's full build and test suite need (the demo needs none):
#   pkg-config, libasound2-dev  cpal in the tolk.mic / tolk.speaker plugins links ALSA
#   libopus-dev  the listener web app's Opus encoder (core, `opus` crate, found by pkg-config)
#   pulseaudio, pulseaudio-utils  the real-time device tests (a private daemon with null sinks)
#   python3, python3-venv  the openai SDK compatibility test of `tolk serve` (tests/python)
# and, through tests/browser/setup.sh, what the browser tests need (Debian's chromium and the
# pinned playwright-core). Does nothing when they are all installed; uses sudo when not root.
set -euo pipefail
packages=(pkg-config libasound2-dev libopus-dev pulseaudio pulseaudio-utils python3 python3-venv)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exec "$(dirname "$0")/../tests/browser/setup.sh"
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
exec "$(dirname "$0")/../tests/browser/setup.sh"
