#!/usr/bin/env bash
# Installs what the browser tests need, and nothing is downloaded at test time:
#   chromium        Debian's browser (/usr/bin/chromium); never a browser fetched by a test tool
#   icecast2        Debian's Icecast server, for the test that publishes to it (on 127.0.0.1)
#   playwright-core the pinned version in package-lock.json, into tests/browser/node_modules
#                   (npm's cache keeps a second install quick and offline)
# Does nothing when both are there; uses sudo for apt when not root.
set -euo pipefail
cd "$(dirname "$0")"
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -x /usr/bin/icecast2 ] || missing+=(icecast2)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    echo "browser tests: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
want=$(node -e 'console.log(require("./package-lock.json").packages["node_modules/playwright-core"].version)')
have=$(node -e 'try{console.log(require("./node_modules/playwright-core/package.json").version)}catch{console.log("")}')
if [ "$want" != "$have" ]; then
    echo "browser tests: installing playwright-core $want" >&2
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefer-offline --no-audit --no-fund --loglevel=error
fi
