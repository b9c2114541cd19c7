#!/usr/bin/env bash
# ThreadSanitizer over the integration tests (the engines, views, async results, the fault
# suite and its soak of mixed calls), with std rebuilt instrumented. Only crossbeam-epoch's and
# rayon's fence-based code is suppressed (.ci/tsan-suppressions). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || true
rustup component add --toolchain nightly rust-src >/dev/null
export RUSTFLAGS="-Zsanitizer=thread"
export RUSTDOCFLAGS="-Zsanitizer=thread"
# allocator_may_return_null: the fault suite asks for outputs no allocator can give, on purpose.
export TSAN_OPTIONS="suppressions=$PWD/.ci/tsan-suppressions halt_on_error=1 allocator_may_return_null=1 ${TSAN_OPTIONS:-}"
export CARGO_TARGET_DIR=target/tsan
# TSan slows every atomic down; keep the soak short but real.
export PARVIEW_SOAK_SECS="${PARVIEW_SOAK_SECS:-5}"
# Every integration test but the MPI ones (feature `mpi`: mpi, mpi_farm, mpi_checkpoint, from_pool_to_cluster; run under mpirun by .ci/run) and the
# allocation counter (a single-threaded measurement with its own global allocator). Optimised,
# with debug assertions kept, so that TSan's slowdown leaves the soak room to run.
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
tests=()
for f in tests/*.rs; do
    name=$(basename "$f" .rs)
    case "$name" in mpi | mpi_farm | mpi_checkpoint | from_pool_to_cluster | allocations) ;; *) tests+=(--test "$name") ;; esac
done
timeout "${TSAN_TIMEOUT:-1500}" cargo +nightly test --release -Zbuild-std \
    --target x86_64-unknown-linux-gnu "${tests[@]}" "$@"
