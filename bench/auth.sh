#!/usr/bin/env bash
# What sealing costs, in one run: 3-replica RSL and 3-host KV clusters (in memory) on
# 127.0.0.1 at 50 closed-loop clients, without keys and with keys (`fleet config local
# --keys`), alternating runs (plain, sealed, plain, sealed) so that drift on the machine
# falls on both. Then a flood: forged datagrams (a sealed header, a made-up tag) from a
# local flooder at the RSL leader, at its full rate for the run, while the 50 clients go on;
# prints the goodput against the same load without the flood, what the flooder sent and
# what the leader refused. Stops everything it started.
#
#   bench/auth.sh [seconds-per-run]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-6}"

cargo build --release -q -p fleet-cli
FLEET=target/release/fleet
WORK=$(mktemp -d /tmp/fleet-auth-bench.XXXX)
pids=()
stop_all() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap 'stop_all; rm -rf "$WORK"' EXIT

start() { # kind sealed -> writes $WORK/cluster.toml, starts the servers
  local base=$(( 22000 + RANDOM % 8000 ))
  rm -rf "$WORK/keys"
  if [ "$2" = sealed ]; then
    "$FLEET" config local --replicas 3 --base-port "$base" --keys "$WORK/keys" >"$WORK/cluster.toml"
  else
    "$FLEET" config local --replicas 3 --base-port "$base" >"$WORK/cluster.toml"
  fi
  for id in 0 1 2; do
    "$FLEET" "$1" serve --config "$WORK/cluster.toml" --id "$id" -v >"$WORK/$1-$id.log" 2>&1 &
    pids+=($!)
  done
  sleep 1
  if [ "$1" = rsl ]; then "$FLEET" rsl put --config "$WORK/cluster.toml" warmup 1 >/dev/null
  else "$FLEET" kv set --config "$WORK/cluster.toml" 1 warmup >/dev/null; fi
}

bench() { # kind -> "ops/s p50 p99"
  local threads=2
  [ "$1" = kv ] && threads=1
  "$FLEET" bench "$1" --config "$WORK/cluster.toml" --clients 50 --duration-s "$SECS" --value-size 128 \
    --threads "$threads" --json \
    | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.0f %d %d" % (d["ops_per_s"], d["p50_us"], d["p99_us"]))'
}

run() { # kind sealed -> "ops/s p50 p99"
  start "$1" "$2"
  bench "$1"
  stop_all
}

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf "%-10s %-8s %10s %8s %8s\n" system keys ops/s p50_us p99_us
declare -A sum
for kind in rsl kv; do
  for round in 1 2; do
    for mode in plain sealed; do
      read -r ops p50 p99 < <(run "$kind" "$mode")
      printf "%-10s %-8s %10s %8s %8s\n" "$kind" "$mode" "$ops" "$p50" "$p99"
      sum[$kind-$mode]=$(( ${sum[$kind-$mode]:-0} + ops ))
    done
  done
done
for kind in rsl kv; do
  python3 -c "print('%s: sealed / plain = %.3f (mean of two runs each)' % ('$kind', ${sum[$kind-sealed]} / ${sum[$kind-plain]}))"
done

# The flood: forged datagrams at the RSL leader (replica 0 leads view (1, 0)), at a paced
# rate and then as fast as one flooder core goes; bounded in time and count.
flood_run() { # rate (forged datagrams per second; 0: unpaced) -> "sent refused ops/s p50 p99"
  start rsl sealed
  local leader
  leader=$(python3 -c "import tomllib; print(tomllib.load(open('$WORK/cluster.toml','rb'))['rsl']['replicas'][0])")
  python3 - "$leader" "$((SECS + 1))" "$1" >"$WORK/flood.txt" <<'PY' &
import os, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
secs, rate = float(sys.argv[2]), int(sys.argv[3])
start = time.time()
end = start + secs  # bounded in time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
forged = bytes([0xF1, 3, ord("A"), 1]) + os.urandom(120)
sent = 0
while time.time() < end and sent < 50_000_000:  # and in count
    for _ in range(64):
        try:
            s.sendto(forged, (host, int(port)))
            sent += 1
        except OSError:
            pass
    if rate:
        ahead = sent / rate - (time.time() - start)
        if ahead > 0:
            time.sleep(ahead)
print(sent)
PY
  local flood=$!
  sleep 0.5
  local ops p50 p99
  read -r ops p50 p99 < <(bench rsl)
  wait "$flood"
  sleep 1.2  # one more stats line
  local refused
  refused=$(grep -o 'auth_refused=[0-9]*' "$WORK/rsl-0.log" | tail -1 | cut -d= -f2)
  echo "$(cat "$WORK/flood.txt") $refused $ops $p50 $p99"
  stop_all
}

start rsl sealed
read -r calm calm_p50 calm_p99 < <(bench rsl)
stop_all
echo "no flood: $calm ops/s (p50 $calm_p50 us, p99 $calm_p99 us)"
for rate in 20000 100000 0; do
  read -r sent refused ops p50 p99 < <(flood_run "$rate")
  label=$([ "$rate" = 0 ] && echo "unpaced" || echo "$rate/s")
  python3 -c "print('flood %s: %d forged sent in %d s (%d/s), %d refused by the leader; goodput %d ops/s (p50 %d us, p99 %d us) = %.2f of no flood' % ('$label', $sent, $SECS + 1, $sent / ($SECS + 1), $refused, $ops, $p50, $p99, $ops / $calm))"
done
