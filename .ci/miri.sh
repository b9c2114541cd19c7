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
timeout "${MIRI_TIMEOUT:-1800}" cargo +nightly miri test --lib -- map::tests map::checkpoint::tests map::stream::tests map::early::tests map::fold::tests map::chunks::tests join::tests unwind::tests schedule::tests
