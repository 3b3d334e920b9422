#!/usr/bin/env bash
# Embedded CI: install what is needed (QEMU, llvm-tools, the Cortex-M4F target), build the
# firmware image and print its flash/RAM size, then run the engine's no_std tests on an
# emulated Cortex-M4F (QEMU mps2-an386, semihosting), which prints `N passed, N failed`.
# Safe to run on a fresh machine and on a developer's machine. Call it from .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== embedded toolchain"
rustup target add thumbv7em-none-eabihf >/dev/null
rustup component add llvm-tools >/dev/null 2>&1 || rustup component add llvm-tools-preview >/dev/null
if ! command -v qemu-system-arm >/dev/null; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get install -y qemu-system-arm >/dev/null 2>&1 \
        || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y qemu-system-arm >/dev/null; }
fi
qemu-system-arm --version | head -1
BIN="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
SIZE="$BIN/llvm-size"

echo "== firmware (examples/firmware: RSL replica 0 of 3, thumbv7em-none-eabihf, release)"
(cd examples/firmware && cargo build --release --locked)
ELF=examples/firmware/target/thumbv7em-none-eabihf/release/fleet-firmware
"$SIZE" "$ELF"
"$SIZE" -A "$ELF" | grep -E '^(\.vector_table|\.text|\.rodata|\.data|\.bss|\.uninit) '
read -r TEXT DATA BSS _ < <("$SIZE" "$ELF" | tail -1)
FLASH=$((TEXT + DATA))
RAM=$((DATA + BSS))
echo "firmware: flash ${FLASH} B ($((FLASH / 1024)) KiB, target <= 96 KiB), static RAM ${RAM} B ($((RAM / 1024)) KiB, target <= 64 KiB)"
if [ "$FLASH" -gt $((96 * 1024)) ] || [ "$RAM" -gt $((64 * 1024)) ]; then
    echo "firmware over its size budget; largest symbols:"
    "$BIN/llvm-nm" --size-sort -S -C --radix=d "$ELF" | tail -15
    exit 1
fi

echo "== engine no_std tests on Cortex-M4F (examples/qemu-tests under QEMU mps2-an386)"
(cd examples/qemu-tests && cargo build --release --locked && timeout 120 cargo run --release --locked)
