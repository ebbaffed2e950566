#!/usr/bin/env bash
# Installs the Debian packages tolk needs. With `--build`, only what `cargo build` needs (the
# demo's first step):
#   pkg-config, libasound2-dev  cpal in the tolk.mic / tolk.speaker plugins links ALSA
#   libopus-dev  the listener web app's Opus encoder (core, `opus` crate, found by pkg-config)
# With `--offline`, those and what the offline engine (`tolk serve --engine offline`, cargo
# feature `tolk-core/offline`) needs; its models come from scripts/models.sh:
#   cmake  builds CTranslate2 (C++, vendored by the ct2rs crate)
#   apertium, apertium-eng-spa, apertium-eng-cat  machine translation en→es, en→ca
#   espeak-ng  speech synthesis (called as a program)
# Without a flag, all of the above and what the full test suite needs:
#   pulseaudio, pulseaudio-utils  the real-time device tests (a private daemon with null sinks)
#   python3, python3-venv  the openai SDK compatibility test of `tolk serve` (tests/python)
# and, through tests/browser/setup.sh, what the browser tests need (Debian's chromium and the
# pinned playwright-core) and the Icecast test (Debian's icecast2). Does nothing when they are all
# installed; uses sudo when not root.
set -euo pipefail
packages=(pkg-config libasound2-dev libopus-dev)
offline=(cmake apertium apertium-eng-spa apertium-eng-cat espeak-ng)
build_only=false
if [ "${1:-}" = "--build" ]; then
    build_only=true
elif [ "${1:-}" = "--offline" ]; then
    build_only=true
    packages+=("${offline[@]}")
else
    packages+=("${offline[@]}" pulseaudio pulseaudio-utils python3 python3-venv)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    echo "deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$build_only" = false ]; then
    exec "$(dirname "$0")/../tests/browser/setup.sh"
fi
