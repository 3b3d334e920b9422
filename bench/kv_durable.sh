#!/usr/bin/env bash
# Durable KV hosts against Redis with an fsync'd append-only file, in one run, on this
# machine's disk: a 3-host Fleet KV cluster with data directories (`fleet kv serve
# --data-dir`: every reply leaves only once the inputs before it are fdatasync'd) and Redis
# with `--appendonly yes --appendfsync always` (the AOF fsync'd before replies), both on
# 127.0.0.1 with their data under /var/tmp (the same disk). 50 closed-loop clients (CLIENTS
# to change it), 128-byte values: writes only, and half reads. Prints each figure and the
# ratio Fleet / Redis. Installs Debian's redis-server if it is missing. Stops everything it
# started.
#
#   bench/kv_durable.sh [seconds-per-run]
#
# As in bench/compare.sh, each side runs with 1 and with 2 load threads (redis-benchmark
# --threads, fleet bench --threads) and its best figure is compared; the thread count is
# printed beside it. Every key starts at host 0 (no shards): one Fleet host does the work,
# as one Redis does.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-5}"
VALUE=128
CLIENTS="${CLIENTS:-50}"

if ! command -v redis-benchmark >/dev/null || ! command -v redis-server >/dev/null; then
  echo "installing redis-server (Debian package)..." >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; fi
fi

cargo build --release -q -p fleet-cli
FLEET="${CARGO_TARGET_DIR:-target}/release/fleet"
WORK=$(mktemp -d /var/tmp/fleet-kv-durable.XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

REDIS_PORT=$(( 30500 + RANDOM % 1000 ))
mkdir -p "$WORK/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always \
  --dir "$WORK/redis" --daemonize no >"$WORK/redis.log" 2>&1 &
pids+=($!)
BASE=$(( 22000 + RANDOM % 8000 ))  # below the ephemeral range
"$FLEET" config local --replicas 3 --base-port "$BASE" >"$WORK/cluster.toml"
for id in 0 1 2; do
  "$FLEET" kv serve --config "$WORK/cluster.toml" --id "$id" --data-dir "$WORK/data-$id" -v >"$WORK/kv-$id.log" 2>&1 &
  pids+=($!)
done
sleep 1
"$FLEET" kv set --config "$WORK/cluster.toml" 1 warmup >/dev/null
# A new host zero-fills its first log segment and then the next one (80 MiB each at the
# default compaction threshold) before its syncs are data flushes only: measure once that
# start-up writing is over (at most 60 s), so that neither side runs against it.
for _ in $(seq 600); do
  ready=1
  for id in 0 1 2; do
    [ "$(stat -c %s "$WORK/data-$id/wal-prepared.tmp" 2>/dev/null || echo 0)" -ge $(( 80 << 20 )) ] || ready=0
  done
  [ "$ready" = 1 ] && break
  sleep 0.1
done
sleep 1
[ "$(redis-cli -p "$REDIS_PORT" config get appendfsync | tail -1)" = always ] || { echo "redis: appendfsync is not always" >&2; exit 1; }

rps() { # benchmark output -> requests per second (the mean of the tests run)
  tr '\r' '\n' | awk '/requests per second/ {for (i=1;i<=NF;i++) if ($i ~ /^[0-9.]+$/) {s+=$i; c++; break}} END {printf "%.0f", s/c}'
}
redis_ops() { # tests clients threads -> requests/s, a run of about SECS seconds per test
  local probe n
  probe=$(redis-benchmark -p "$REDIS_PORT" -c "$2" -n $(( $2 * 100 )) -d "$VALUE" -t "$1" --threads "$3" -q 2>/dev/null | rps)
  n=$(( ${probe%.*} * SECS )); [ "$n" -lt 1000 ] && n=1000; [ "$n" -gt 2000000 ] && n=2000000
  redis-benchmark -p "$REDIS_PORT" -c "$2" -n "$n" -d "$VALUE" -t "$1" --threads "$3" -q 2>/dev/null | rps
}
fleet_ops() { # read-pct clients threads -> ops/s p50 p99
  "$FLEET" bench kv --config "$WORK/cluster.toml" --clients "$2" --threads "$3" --duration-s "$SECS" \
    --value-size "$VALUE" --read-pct "$1" --json \
    | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.0f %d %d" % (d["ops_per_s"], d["p50_us"], d["p99_us"]))'
}

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); data under /var/tmp"
printf "%-22s %26s %36s %8s\n" workload "redis AOF-always ops/s (thr)" "fleet durable ops/s (thr, p50/p99 us)" ratio
for w in "writes:0:set" "half reads:50:set,get"; do
  IFS=: read -r name pct tests <<<"$w"
  r=0; rt=0; f=0; ft=0; p50=0; p99=0
  for t in 1 2; do # interleaved, so machine noise hits both alike
    x=$(redis_ops "$tests" "$CLIENTS" "$t")
    [ "${x%.*}" -gt "$r" ] && { r=${x%.*}; rt=$t; }
    read -r y y50 y99 < <(fleet_ops "$pct" "$CLIENTS" "$t")
    [ "$y" -gt "$f" ] && { f=$y; ft=$t; p50=$y50; p99=$y99; }
  done
  printf "%-22s %26s %36s %8s\n" "$name, $CLIENTS clients" "$r ($rt)" "$f ($ft, $p50/$p99)" \
    "$(python3 -c "print('%.2fx' % ($f/$r))")"
done
sleep 1.2 # host 0's next stats line
line=$(grep 'fsyncs=' "$WORK/kv-0.log" | tail -1 || true)
echo "fleet host 0 after the runs: $(echo "$line" | grep -o 'sets: [0-9]*'), $(echo "$line" | grep -o 'fsyncs=[0-9]*'), $(echo "$line" | grep -o 'images=[0-9]*')"
