#!/usr/bin/env bash
# The engine bench's cost per committed operation counted by callgrind, so that two builds
# compare without the machine's noise (wall time here swings +-20 % within minutes, and the
# VM exposes no hardware counters): instructions, first-level data-cache misses (reads and
# writes, in callgrind's model of this CPU's caches), last-level misses, and an estimate of
# cycles (instructions + 10 x D1 misses + 100 x LL misses). Only `Cluster::round` is counted
# (the committed operations, not the set-up). Optionally lists the functions with the most
# first-level misses.
#
#   bench/engine-cost.sh [bench-binary] [--top N]
#
# Without a binary it builds `cargo bench -p fleet-engine --bench rsl` and uses that. Takes
# about a minute (the bench runs some 50x slower under callgrind). Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-}"
TOP=0
if [ "${2:-}" = "--top" ]; then TOP="${3:-15}"; fi
command -v valgrind >/dev/null || { echo "engine-cost.sh: valgrind is not installed" >&2; exit 1; }
if [ -z "$BIN" ]; then
    BIN=$(cargo bench -p fleet-engine --bench rsl --no-run 2>&1 | sed -n 's/.*Executable benches\/rsl.rs (\(.*\))/\1/p' | tail -1)
fi
[ -x "$BIN" ] || { echo "engine-cost.sh: no bench binary at '$BIN'" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
valgrind --tool=callgrind --cache-sim=yes --callgrind-out-file="$WORK/cg.out" \
    --toggle-collect='*Cluster*round*' "$BIN" --bench commit --profile-time 3 \
    >"$WORK/stdout" 2>"$WORK/stderr"
OPS=$(grep -o "cluster: [0-9]* ops" "$WORK/stderr" | grep -o "[0-9]*" || true)
[ -n "$OPS" ] && [ "$OPS" -gt 0 ] || { echo "engine-cost.sh: the bench reported no operations" >&2; exit 1; }
# The totals line: `Ir (100.0%) Dr (100.0%) Dw (100.0%) I1mr .. D1mr .. D1mw .. ILmr .. DLmr .. DLmw ..`.
callgrind_annotate "$WORK/cg.out" 2>/dev/null | grep "PROGRAM TOTALS" | tr -d , |
    awk -v ops="$OPS" '{ ir = $1; d1 = $9 + $11; ll = $15 + $17;
        printf "%d ops: %.0f instructions, %.1f D1 misses, %.2f LL misses, ~%.0f cycles per op\n",
            ops, ir / ops, d1 / ops, ll / ops, (ir + 10 * d1 + 100 * ll) / ops }'
if [ "$TOP" -gt 0 ]; then
    echo "functions by first-level read misses, then write misses (callgrind_annotate's columns):"
    callgrind_annotate --sort=D1mr,D1mw "$WORK/cg.out" 2>/dev/null |
        awk '/file:function/ { on = 1; getline; next } on && NF { print }' | head -n "$TOP" | cut -c1-220
fi
