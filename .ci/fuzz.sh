#!/usr/bin/env bash
# Fuzz every cargo-fuzz target of proofs/fuzz for a short bounded time each.
#
#   .ci/fuzz.sh                 # 15 s per target (CI: .ci/run calls it)
#   FUZZ_SECONDS=3600 .ci/fuzz.sh replica_structured   # a long run of one target
#
# Built without AddressSanitizer and without comparison tracing (`-s none
# --no-trace-compares`, override with FUZZ_BUILD_FLAGS): the engine and the harness forbid
# unsafe code, and the harness builds every envelope and identity itself, so both cost far
# more executions (4-10x: docs/simulator.md, "Fuzzing") than they find.
#
# Installs cargo-fuzz (`cargo install --locked cargo-fuzz`) and the nightly toolchain if
# missing. Seeds are read from proofs/fuzz/corpus/<target> (committed, small) and
# proofs/fuzz/corpus/<target>.tar.gz (the minimized corpus of the last one-hour run); new
# corpus entries go to a scratch copy so the committed ones stay as they are. A crash leaves its input
# in proofs/fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/../proofs/fuzz"

seconds="${FUZZ_SECONDS:-15}"
read -r -a build_flags <<< "${FUZZ_BUILD_FLAGS:--s none --no-trace-compares}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "== installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
echo "== build"
cargo +nightly fuzz build -O "${build_flags[@]}"
for t in "${targets[@]}"; do
    echo "== fuzz $t for ${seconds}s"
    mkdir -p "$scratch/$t" "corpus/$t"
    cp -r "corpus/$t/." "$scratch/$t/" 2>/dev/null || true
    # The corpus a one-hour run left, merged and minimized (docs/simulator.md, "Fuzzing").
    if [ -f "corpus/$t.tar.gz" ]; then tar -C "$scratch/$t" -xzf "corpus/$t.tar.gz"; fi
    cargo +nightly fuzz run -O "${build_flags[@]}" "$t" "$scratch/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
        | grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs|SUMMARY|ERROR|panicked|stat::number_of_executed_units" || true
    if ls "artifacts/$t"/crash-* "artifacts/$t"/oom-* "artifacts/$t"/timeout-* >/dev/null 2>&1; then
        echo "!! $t: crash input(s) in proofs/fuzz/artifacts/$t" >&2
        exit 1
    fi
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"
