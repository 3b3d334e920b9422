#!/usr/bin/env bash
# How fast a frozen follower catches up, against the state's size: 3 release replicas on
# 127.0.0.1, the state filled with N keys (16-byte values), then 20 closed-loop clients
# (50 % reads) run for 20 s; 3 s in, follower 1 is frozen (SIGSTOP) for 3 s, then resumed.
# With LOAD=after the clients stop at the moment it resumes instead.
# Prints, per size: the seconds from SIGCONT until the follower's executed count reaches
# the leader's at SIGCONT (from the 1 s stats lines: +-1 s), and the leader's CPU use (of
# one core) in the 3 s before the pause and in the 3 s after SIGCONT, when it also
# supplies the follower.
#
#   bench/catch_up.sh [keys...]        default: 1000 100000 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p fleet-cli
FLEET=$PWD/target/release/fleet
WORK=$(mktemp -d /tmp/fleet-catch-up.XXXX)
pids=()
stop_all() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap 'stop_all; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
sizes=("$@"); [ ${#sizes[@]} -eq 0 ] && sizes=(1000 100000 1000000)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
printf "%-10s %-8s %-20s %s\n" keys load "caught up after (s)" "leader CPU: steady -> catching up"
for keys in "${sizes[@]}"; do
  base=$(( 22000 + RANDOM % 8000 ))
  "$FLEET" config local --replicas 3 --base-port "$base" > "$WORK/c.toml"
  for id in 0 1 2; do
    "$FLEET" rsl serve --config "$WORK/c.toml" --id "$id" -v > "$WORK/r$id.log" 2>&1 &
    pids+=($!)
  done
  sleep 1
  "$FLEET" rsl put --config "$WORK/c.toml" warm 1 > /dev/null
  # The map holds at most 1,000,000 keys by default; "warm" is one of them.
  "$FLEET" bench rsl --config "$WORK/c.toml" --clients 50 --duration-s 120 --value-size 16 \
    --keys $(( keys < 1000000 ? keys : 999999 )) --fill --json > /dev/null
  dur=20; [ "${LOAD:-during}" = after ] && dur=6
  "$FLEET" bench rsl --config "$WORK/c.toml" --clients 20 --duration-s $dur --value-size 16 \
    --keys "$keys" --read-pct 50 --json > "$WORK/load.json" &
  load=$!
  t0=$(cpu_ticks "${pids[0]}"); sleep 3; t1=$(cpu_ticks "${pids[0]}")
  kill -STOP "${pids[1]}"; sleep 3
  target=$(grep -o 'executed=[0-9]*' "$WORK/r0.log" | tail -1 | cut -d= -f2)
  kill -CONT "${pids[1]}"; resumed=$(date +%s.%N)
  c0=$(cpu_ticks "${pids[0]}")
  (sleep 3; cpu_ticks "${pids[0]}" > "$WORK/c1") &
  cpu_pid=$!
  caught=""
  for _ in $(seq 1 300); do
    now=$(grep -o 'executed=[0-9]*' "$WORK/r1.log" | tail -1 | cut -d= -f2)
    if [ "$now" -ge "$target" ]; then caught=$(python3 -c "print('%.1f' % ($(date +%s.%N) - $resumed))"); break; fi
    sleep 0.1
  done
  wait "$cpu_pid" || true
  hz=$(getconf CLK_TCK)
  steady=$(( (t1 - t0) * 100 / (3 * hz) )); during=$(( ($(cat "$WORK/c1") - c0) * 100 / (3 * hz) ))
  wait "$load" || true
  printf "%-10s %-8s %-20s %s\n" "$keys" "${LOAD:-during}" "${caught:-not in 30 s}" "${steady}% -> ${during}%"
  stop_all
done
