#!/usr/bin/env bash
# Miri over the unit tests that exercise parview's unsafe code: the map pipeline's sinks, holes,
# stop and untaken input, async outputs and streams (src/map/tests.rs), the guarded drops
# (src/unwind.rs) and the dispenser (src/schedule.rs). Tree Borrows, because crossbeam-epoch
# (under crossbeam-deque) trips Stacked Borrows; leaks ignored, because crossbeam-epoch's
# global collector is never freed (crossbeam's own CI does the same); isolation off so that
# proptest can read its regression files. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || true
rustup component add --toolchain nightly miri rust-src >/dev/null
cargo +nightly miri setup >/dev/null
export MIRIFLAGS="-Zmiri-tree-borrows -Zmiri-ignore-leaks -Zmiri-disable-isolation ${MIRIFLAGS:-}"
# Property tests run 3 cases under Miri (see `cases` in src/schedule.rs).
# Miri runs a test binary on one core: build once, then run two halves of about equal length
# (~12 min each here) side by side, so the step takes half as long on 2 cores.
cargo +nightly miri test --lib --no-run
run() { timeout "${MIRI_TIMEOUT:-1800}" cargo +nightly miri test --lib -- "$@"; }
first_log=$(mktemp)
run map::tests map::chunks::tests >"$first_log" 2>&1 &
first=$!
second_rc=0
run map::checkpoint::tests map::stream::tests map::early::tests map::fold::tests join::tests unwind::tests schedule::tests || second_rc=$?
first_rc=0
wait "$first" || first_rc=$?
echo "--- the first half (map::tests, map::chunks::tests):"
cat "$first_log"
rm -f "$first_log"
if [ "$first_rc" -ne 0 ] || [ "$second_rc" -ne 0 ]; then
    echo "Miri failed: first half rc=$first_rc, second half rc=$second_rc" >&2
    exit 1
fi
