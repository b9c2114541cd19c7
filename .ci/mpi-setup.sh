#!/usr/bin/env bash
# Installs Open MPI (runtime + headers) and the libclang that rsmpi's
# bindgen build step needs. Debian 12 (bookworm) ships libclang 14.
# Run as root (or via sudo) before `cargo test --features mpi`.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends \
    libopenmpi-dev openmpi-bin libclang1-14 libclang-common-14-dev
