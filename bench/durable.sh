#!/usr/bin/env bash
# Durable mode against etcd, in one run, on this machine's disk: a 3-replica Fleet RSL
# cluster with data directories (every promise and vote synced before the datagram that
# depends on it leaves) and a 3-member etcd 3.4 cluster (its WAL fsync'd), both on
# 127.0.0.1 with their data under /var/tmp (the same disk). 50 closed-loop clients,
# 128-byte puts; also 1 client. Prints each figure and the ratio Fleet / etcd.
#
#   bench/durable.sh [seconds-per-fleet-run]
#
# etcd's load generator and its install come from ../shared/peers/etcd.sh (Debian's
# etcd-server). Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-8}"
PEERS="${PEERS:-../shared/peers}"

cargo build --release -q -p fleet-cli
FLEET=target/release/fleet
WORK=$(mktemp -d /var/tmp/fleet-durable.XXXX)
pids=()
stop_all() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap 'stop_all; rm -rf "$WORK"' EXIT

fleet_puts() { # clients -> "ops/s p50 p99"
  local base=$(( 22000 + RANDOM % 8000 ))  # below the ephemeral range
  rm -rf "$WORK"/data-*
  "$FLEET" config local --replicas 3 --base-port "$base" >"$WORK/cluster.toml"
  for id in 0 1 2; do
    "$FLEET" rsl serve --config "$WORK/cluster.toml" --id "$id" --data-dir "$WORK/data-$id" >"$WORK/rsl-$id.log" 2>&1 &
    pids+=($!)
  done
  sleep 1
  "$FLEET" rsl put --config "$WORK/cluster.toml" warmup 1 >/dev/null
  "$FLEET" bench rsl --config "$WORK/cluster.toml" --clients "$1" --duration-s "$SECS" --value-size 128 \
    --read-pct 0 --keys 100000 --json \
    | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.0f %d %d" % (d["ops_per_s"], d["p50_us"], d["p99_us"]))'
  stop_all
}

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); data under /var/tmp"
read -r f1 f1p50 _ < <(fleet_puts 1)
read -r f50 f50p50 f50p99 < <(fleet_puts 50)
etcd=$(STORAGE=disk bash "$PEERS/etcd.sh" | tail -1)
field() { echo "$etcd" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
e1=$(field put_c1_ops_per_s); e50=$(field put_c50_ops_per_s)
printf "%-14s %22s %22s %8s\n" workload "fleet ops/s (p50 us)" "etcd ops/s (p50 us)" ratio
printf "%-14s %22s %22s %8s\n" "puts, 1 client" "$f1 ($f1p50)" "$e1 ($(field put_c1_p50_us))" "$(python3 -c "print('%.2fx' % ($f1/$e1))")"
printf "%-14s %22s %22s %8s\n" "puts, 50" "$f50 ($f50p50)" "$e50 ($(field put_c50_p50_us))" "$(python3 -c "print('%.2fx' % ($f50/$e50))")"
echo "fleet 50 clients p99 ${f50p99} us; etcd p99 $(field put_c50_p99_us) us"
