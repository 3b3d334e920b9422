#!/usr/bin/env bash
# Boots three firmware images (replicas 0, 1, 2) on three emulated MPS2 boards whose LAN9118
# NICs share one QEMU multicast Ethernet segment, lets them run for a few seconds, and reads
# the traffic capture of replica 0's NIC: the cluster has formed when replica 0 sent 1a,
# received 1b from both peers and broadcast StartingPhase2 (it leads view (1, 0)).
# Needs qemu-system-arm and python3. Not part of CI (three fat-LTO builds); run by hand.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_TO_RUN="${1:-6}"
# One set of keys for the three images (as `fleet config local --keys DIR` writes them).
KEYS="$(mktemp -d)"
for f in member client; do
    printf '1 %s\n' "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$KEYS/$f.key"
done
chmod 600 "$KEYS"/*.key
for n in 0 1 2; do
    FLEET_KEYS_DIR="$KEYS" FLEET_NODE=$n cargo build --release --quiet --target-dir "target/node$n"
done
OUT="$(mktemp -d)"
pids=()
for n in 0 1 2; do
    qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic -monitor none \
        -kernel "target/node$n/thumbv7em-none-eabihf/release/fleet-firmware" \
        -netdev socket,id=n0,mcast=230.0.0.1:12345,localaddr=127.0.0.1 \
        -net nic,netdev=n0,model=lan9118,macaddr=02:00:00:00:00:0$((n + 1)) \
        -object filter-dump,id=f0,netdev=n0,file="$OUT/node$n.pcap" >"$OUT/qemu$n.log" 2>&1 &
    pids+=($!)
done
sleep "$SECONDS_TO_RUN"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
python3 - "$OUT/node0.pcap" <<'PY'
import struct, sys
names = {0: "Request", 1: "1a", 2: "1b", 3: "2a", 4: "2b", 5: "Heartbeat", 6: "Reply",
         7: "AppStateRequest", 8: "AppStateSupply", 9: "StartingPhase2", 10: "ForwardedRequest",
         11: "RecoverRequest", 12: "RecoverReply"}
d = open(sys.argv[1], "rb").read()
off, seen = 24, {}
while off + 16 <= len(d):
    incl = struct.unpack("<IIII", d[off:off + 16])[2]
    pkt = d[off + 16:off + 16 + incl]
    off += 16 + incl
    if pkt[12:14] == b"\x08\x00" and pkt[23] == 17 and len(pkt) > 49 and pkt[42] == 0xF1:
        src, dst = ".".join(map(str, pkt[26:30])), ".".join(map(str, pkt[30:34]))
        # A sealed datagram: [F1, version, 'A', key id] before the inner [F1, version, 'R',
        # cluster (4)] and the message tag.
        tag_at = 53 if pkt[44] == ord("A") else 49
        key = (src, dst, names.get(pkt[tag_at], pkt[tag_at]))
        seen[key] = seen.get(key, 0) + 1
for (src, dst, kind), count in sorted(seen.items(), key=str):
    print(f"{count:5} {kind:15} {src} -> {dst}")
ok = all(seen.get(k) for k in [("10.0.0.2", "10.0.0.1", "1b"), ("10.0.0.3", "10.0.0.1", "1b"),
                                 ("10.0.0.1", "10.0.0.2", "StartingPhase2"), ("10.0.0.1", "10.0.0.3", "StartingPhase2")])
print("cluster formed: replica 0 leads view (1, 0)" if ok else "cluster did NOT form")
sys.exit(0 if ok else 1)
PY
