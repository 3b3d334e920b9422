#!/usr/bin/env bash
# A/B of the std server's I/O modes on 127.0.0.1, in one run: a 3-replica RSL cluster per
# mode, the same closed-loop load (`fleet bench rsl`, 128-byte values), rounds interleaved
# so that machine noise hits every mode alike. Modes: batched syscalls (recvmmsg/sendmmsg,
# the default), single syscalls (one recv_from/send_to per datagram), and durable mode
# (batched, with --data-dir: one fdatasync per burst). An optional baseline binary (e.g. a
# build of an older commit) runs as mode "baseline" with its default flags.
#
#   bench/io-modes.sh [seconds-per-run] [clients] [rounds] [baseline-binary]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-5}"
CLIENTS="${2:-50}"
ROUNDS="${3:-2}"
BASELINE="${4:-}"

cargo build --release -q -p fleet-cli
FLEET=target/release/fleet
WORK=$(mktemp -d)
pids=()
stop_all() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap 'stop_all; rm -rf "$WORK"' EXIT

run_mode() { # mode -> "ops/s p50 p99"
  local mode=$1 bin=$FLEET extra=()
  case "$mode" in
    batched) extra=(--syscalls batched) ;;
    single) extra=(--syscalls single) ;;
    durable) extra=(--syscalls batched) ;;
    baseline) bin=$BASELINE ;;
  esac
  local base=$(( 22000 + RANDOM % 8000 ))  # below the ephemeral range
  "$FLEET" config local --replicas 3 --base-port "$base" >"$WORK/cluster.toml"
  for id in 0 1 2; do
    local d=()
    [ "$mode" = durable ] && d=(--data-dir "$WORK/data-$id-$RANDOM")
    "$bin" rsl serve --config "$WORK/cluster.toml" --id "$id" "${extra[@]}" "${d[@]}" >"$WORK/$mode-$id.log" 2>&1 &
    pids+=($!)
  done
  sleep 1
  "$FLEET" rsl put --config "$WORK/cluster.toml" warmup 1 >/dev/null
  "$FLEET" bench rsl --config "$WORK/cluster.toml" --clients "$CLIENTS" --duration-s "$SECS" --value-size 128 --json \
    | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.0f %d %d" % (d["ops_per_s"], d["p50_us"], d["p99_us"]))'
  stop_all
}

modes=(batched single durable)
[ -n "$BASELINE" ] && modes+=(baseline)
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $CLIENTS clients, ${SECS}s per run"
printf "%-9s %-6s %10s %8s %8s\n" mode round "ops/s" p50_us p99_us
for r in $(seq 1 "$ROUNDS"); do
  for m in "${modes[@]}"; do
    read -r ops p50 p99 < <(run_mode "$m")
    printf "%-9s %-6s %10s %8s %8s\n" "$m" "$r" "$ops" "$p50" "$p99"
  done
done
