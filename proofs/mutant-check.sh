#!/usr/bin/env bash
# Cross-checks the model's emulation of the proposer's `merge_vote` mutants against the real
# mutants. For each mutant (`>` to `<`, `>` to `==` in engine/src/rsl/proposer.rs), copies the
# working tree to a temporary directory, applies the mutant there with sed (the tree itself is
# never touched), and runs the unplanted competing-leaders control
# (`simulated_competing_leaders`), which must then fail with a counterexample. It also runs the
# wrapper that emulates the mutant (`Planted::KeepsLowerBallotVote`, `KeepsFirstVote`) on the
# real engine. With one thread both searches are deterministic and, if the emulation is exact,
# take the same walks: the script checks that they report the same number of states and walks
# and the same shrunk counterexample.
#
# Not in CI (it builds the proofs crate a second time: 1-2 minutes here). Usage:
#     proofs/mutant-check.sh            # both mutants
#     proofs/mutant-check.sh lt         # only `<`
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mutants=("${@:-lt eq}")
# shellcheck disable=SC2206
mutants=(${mutants[*]})
tmp=$(mktemp -d /tmp/fleet-mutant.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export FLEET_MODEL_THREADS=1

# The counterexample and the counts of one run's output.
summary() {
    grep -E '^\[planted .* competing leaders\] states|^\[model simulated-competing-leaders\] states' "$1" |
        sed -E 's/.*states ([0-9]+) walks ([0-9]+).*/states \1 walks \2/'
    sed -n '/counterexample to\|VIOLATION of/,/^history:/p' "$1" | grep -E '^ *[0-9]+: |^chosen|^cross-host'
}

status=0
for m in "${mutants[@]}"; do
    case "$m" in
    lt) op='<'; planted=competing_phase1_keeping_the_lower_ballot_vote_breaks_safety ;;
    eq) op='=='; planted=competing_phase1_keeping_the_first_vote_breaks_safety ;;
    *) echo "unknown mutant $m (lt, eq)"; exit 2 ;;
    esac
    echo "== merge_vote mutant: v.bal > merged.bal becomes v.bal $op merged.bal"
    rm -rf "$tmp/tree"
    mkdir "$tmp/tree"
    # The working tree as it is (tracked and new files), without build output.
    git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$tmp/tree"
    sed -i "s/if v\.bal > self\.merged\[i\]\.bal {/if v.bal $op self.merged[i].bal {/" "$tmp/tree/engine/src/rsl/proposer.rs"
    if ! grep -q "if v.bal $op self.merged\[i\].bal {" "$tmp/tree/engine/src/rsl/proposer.rs"; then
        echo "the mutant did not apply: merge_vote changed, update this script"
        exit 2
    fi
    (cd "$tmp/tree" && CARGO_TARGET_DIR="$tmp/target" cargo test -q --release -p fleet-proofs --test rsl_model \
        -- --exact simulated_competing_leaders --nocapture) >"$tmp/real.txt" 2>&1 && real_passed=1 || real_passed=0
    cargo test -q --release -p fleet-proofs --test rsl_model_planted -- --exact "$planted" --nocapture \
        >"$tmp/emulated.txt" 2>&1 || true
    if [ "$real_passed" = 1 ] || ! grep -q 'VIOLATION of' "$tmp/real.txt"; then
        echo "FAIL: the real mutant passed the competing-leaders control"
        status=1
        continue
    fi
    summary "$tmp/real.txt" >"$tmp/real.sum"
    summary "$tmp/emulated.txt" >"$tmp/emulated.sum"
    echo "real mutant (control scope on the mutated engine):"
    head -1 "$tmp/real.sum"
    echo "emulated (planted wrapper on the real engine):"
    head -1 "$tmp/emulated.sum"
    if diff "$tmp/real.sum" "$tmp/emulated.sum" >/dev/null; then
        echo "same walks, same shrunk counterexample:"
        tail -n +2 "$tmp/real.sum"
    else
        echo "DIFFERENT (the emulation is not exact):"
        diff "$tmp/real.sum" "$tmp/emulated.sum" || true
        status=1
    fi
done
cd "$root"
exit $status
