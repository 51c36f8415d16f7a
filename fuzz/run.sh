#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 300 s each; FUZZ_SECONDS overrides),
# seeded with the repository's own files: ONNX fixtures, plan files, .npy fixtures and the
# IDX sample. Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Crashes land in fuzz/artifacts/<target>/; the corpora grow in fuzz/corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-300}"
root=..
mkdir -p corpus/onnx_import corpus/plan_file corpus/npy corpus/idx
cp -n "$root"/tests/fixtures/onnx/*.onnx corpus/onnx_import/ 2>/dev/null || true
find "$root"/experiments -name '*.plan.json' -exec cp -n {} corpus/plan_file/ \;
cp -n "$root"/tests/fixtures/onnx/*.npy corpus/npy/ 2>/dev/null || true
# The first 2 KiB of the sample images, as stored (gzip) and unpacked.
head -c 2048 "$root"/data/fashion-mnist-sample/t10k-images-idx3-ubyte.gz > corpus/idx/sample.gz
gzip -dc "$root"/data/fashion-mnist-sample/t10k-images-idx3-ubyte.gz 2>/dev/null | head -c 4096 > corpus/idx/sample.raw || true
targets="${FUZZ_TARGETS:-onnx_import plan_file npy idx}"
status=0
for target in $targets; do
    echo "== $target: ${seconds} s"
    log="artifacts/$target.log"
    mkdir -p artifacts
    # libFuzzer stops at the first crash; the loop goes on to the next target.
    if cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=1048576 -rss_limit_mb=4096 -timeout=20 >"$log" 2>&1; then
        { grep -E "^(#[0-9]+|Done)" "$log" || true; } | tail -n 2
    else
        status=1
        echo "!! $target found a crash (full log: fuzz/$log):"
        { grep -E "panicked at|ERROR: libFuzzer|Test unit written" "$log" || true; } | head -n 6
        { grep -A1 "panicked at" "$log" || true; } | tail -n 1
    fi
done
exit $status
