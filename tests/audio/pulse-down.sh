#!/usr/bin/env bash
# Stops the daemon and keep-alive readers that tests/audio/pulse-up.sh started (by their pids).
set -uo pipefail
dir="${TOLK_PULSE_DIR:-${TMPDIR:-/tmp}/tolk-pulse}"
for f in "$dir/readers.pid" "$dir/daemon.pid"; do
    [ -f "$f" ] || continue
    while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$f"
    rm -f "$f"
done
