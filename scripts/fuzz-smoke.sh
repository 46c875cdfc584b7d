#!/usr/bin/env bash
# Fuzz smoke run (CI, via scripts/test.sh): builds every cargo-fuzz target in fuzz/, runs
# each on its regression inputs (fuzz/regressions/<target>/, the bugs fuzzing found) and
# then for a fixed number of executions from its committed seeds (fuzz/seeds/<target>/),
# and fails on any crash, hang or out-of-memory. So the targets keep building and the known
# crashers stay fixed; the long runs are in fuzz/README.md.
#
#   bash scripts/fuzz-smoke.sh            # FUZZ_SMOKE_RUNS=N executions per target (default 3000)
#
# Needs nothing but cargo: installs the pinned cargo-fuzz when missing, and builds with
# RUSTC_BOOTSTRAP=1 (cargo-fuzz passes nightly flags; AddressSanitizer works on stable).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_FUZZ_VERSION=0.13.2
RUNS=${FUZZ_SMOKE_RUNS:-3000}
start=$SECONDS

if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
export RUSTC_BOOTSTRAP=1
cd fuzz
# Debug assertions and overflow checks on (cargo-fuzz's default), AddressSanitizer.
cargo fuzz build
bin="target/$(rustc -vV | sed -n 's/^host: //p')/release"
echo "fuzz-smoke: built in $((SECONDS - start)) s"

limits=(-rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=30)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in $(cargo fuzz list); do
    t0=$SECONDS
    mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
    regressions=()
    if [[ -d regressions/$t ]]; then
        mapfile -t regressions < <(find "regressions/$t" -type f | sort)
    fi
    if ((${#regressions[@]})); then
        # Each file once: libFuzzer runs single inputs given by name.
        "$bin/$t" "${limits[@]}" -artifact_prefix="$work/$t/artifacts/" "${regressions[@]}" \
            >"$work/$t/regressions.log" 2>&1 || {
            tail -n 60 "$work/$t/regressions.log"
            echo "fuzz-smoke: $t fails on a regression input (fuzz/regressions/$t)" >&2
            exit 1
        }
    fi
    # New inputs go to a scratch corpus, so the committed seeds stay as they are.
    "$bin/$t" "${limits[@]}" -runs="$RUNS" -max_len=131072 -seed=1 \
        -artifact_prefix="$work/$t/artifacts/" "$work/$t/corpus" "seeds/$t" \
        >"$work/$t/fuzz.log" 2>&1 || {
        tail -n 60 "$work/$t/fuzz.log"
        echo "fuzz-smoke: $t failed; the input is in the log above (Base64) and was written to" \
            "$work/$t/artifacts (kept)" >&2
        trap - EXIT
        exit 1
    }
    echo "fuzz-smoke: $t: ${#regressions[@]} regression inputs, $RUNS runs from" \
        "$(find "seeds/$t" -type f | wc -l) seeds, $((SECONDS - t0)) s"
done
echo "fuzz-smoke: ok in $((SECONDS - start)) s"
