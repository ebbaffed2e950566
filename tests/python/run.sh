#!/usr/bin/env bash
# The official `openai` Python SDK against `tolk serve` (tests/python/sdk_compat.py).
#
# Makes (or reuses) a virtualenv in target/pyenv with `openai[realtime]`, starts the already
# built `target/debug/tolk serve --listen 127.0.0.1:0`, runs the script, stops the server.
# Builds nothing. Exit status: 0 all passed, 1 a check failed or the server would not start,
# 3 no Python environment could be made (no venv module, or PyPI unreachable) — the Rust test
# `serve::openai_python_sdk_accepts_every_event` treats 3 as a skip unless CI=true.
#
# Environment: TOLK_BIN (default target/debug/tolk), TOLK_PYENV (default target/pyenv),
# PYTHON (default python3).
set -uo pipefail
cd "$(dirname "$0")/../.."

TOLK_BIN=${TOLK_BIN:-target/debug/tolk}
PYENV=${TOLK_PYENV:-target/pyenv}
PYTHON=${PYTHON:-python3}
TOKEN=sk-tolk-test

if [ ! -x "$TOLK_BIN" ]; then
    echo "run.sh: $TOLK_BIN is missing: run \`cargo build --workspace\` first" >&2
    exit 1
fi
if ! "$PYENV/bin/python" -c 'import openai, websockets, pydantic' 2>/dev/null; then
    if ! "$PYTHON" -m venv "$PYENV" >&2; then
        echo "run.sh: cannot create a virtualenv in $PYENV (on Debian: apt-get install python3-venv)" >&2
        exit 3
    fi
    if ! "$PYENV/bin/pip" install --quiet --disable-pip-version-check --retries 1 --timeout 15 'openai[realtime]' >&2; then
        echo "run.sh: pip install 'openai[realtime]' failed (is PyPI reachable?)" >&2
        exit 3
    fi
fi

log=$(mktemp)
"$TOLK_BIN" serve --listen 127.0.0.1:0 --token "$TOKEN" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f "$log"' EXIT

url=""
for _ in $(seq 1 100); do
    line=$(head -n 1 "$log")
    case "$line" in
        "tolk serve: listening on "*) url=${line#tolk serve: listening on }; break ;;
    esac
    if ! kill -0 "$server" 2>/dev/null; then break; fi
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "run.sh: tolk serve did not start:" >&2
    cat "$log" >&2
    exit 1
fi

"$PYENV/bin/python" tests/python/sdk_compat.py --url "$url" --token "$TOKEN"
