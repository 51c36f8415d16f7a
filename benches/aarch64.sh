#!/usr/bin/env bash
# The NEON and portable microkernels on aarch64, under qemu-user (Debian packages
# gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user; rustup target
# aarch64-unknown-linux-gnu): the kernel unit test and tests/fast_conv.rs, which hold every
# kernel family the CPU offers to the naive f64 reference. Correctness only: emulated speed
# means nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo test --release --target aarch64-unknown-linux-gnu --lib --test fast_conv
