#!/usr/bin/env bash
# The GPU benchmark in one pass: adapter, kernel throughput at real layer shapes, dense vs
# perforated network latency (ResNet-18 and VGG-16 at batch 1, 8 and 32), ONNX classifiers
# on the GPU against onnxruntime, and, where PyTorch with CUDA is installed, the native peer
# (cuDNN/cuBLAS fp32) on the same networks.
#
# Usage: benches/device.sh [OUTDIR]     (default target/device)
#   PERFORATE_BIN  folder with `perforate` and `examples/gpu_kernels` (default target/release;
#                  build them with `cargo build --release --bin perforate --example gpu_kernels`)
#   PEAK_GFLOPS    fp32 peak for percent-of-peak (default: the peer's measured fp32 GEMM rate)
#   ZOO_MODELS     torchvision models for the ONNX parity step (comma-separated)
#   ZOO_EXPORTERS  exporters for that step (default ts17; see zoo.py)
#   QUICK=1        a smoke run for a CPU adapter (lavapipe): small shapes, small networks
# Every step writes its output under OUTDIR and the script goes on past a failing step; the
# exit code is the number of failed steps.
set -u
out=${1:-target/device}
bin=${PERFORATE_BIN:-target/release}
quick=${QUICK:-0}
mkdir -p "$out"
failed=0
step() { # step NAME COMMAND...: runs COMMAND, output to OUTDIR/NAME.txt and the console
    local name=$1
    shift
    echo "== $name: $*"
    local t0=$SECONDS
    if ! "$@" >"$out/$name.txt" 2>"$out/$name.err"; then
        failed=$((failed + 1))
        echo "   FAILED (exit $?), stderr:"
        tail -5 "$out/$name.err"
    fi
    cat "$out/$name.txt"
    echo "   ($((SECONDS - t0)) s)"
}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv
step adapter bash -c "\"$bin/perforate\" info nin | grep 'GPU adapter'"

peak=${PEAK_GFLOPS:-}
if [ "$quick" != 1 ] && python3 -c 'import torch, torchvision; assert torch.cuda.is_available()' 2>/dev/null; then
    step torch_cuda python3 benches/peers/torch_cuda.py
    if [ -z "$peak" ]; then
        peak=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["fp32_gemm_8192_gflops"]))' \
            "$out/torch_cuda.txt" 2>/dev/null || true)
    fi
fi
kernel_args=()
[ -n "$peak" ] && kernel_args+=(--peak-gflops "$peak")
[ "$quick" = 1 ] && kernel_args+=(--quick)
step kernels "$bin/examples/gpu_kernels" "${kernel_args[@]}"

if [ "$quick" = 1 ]; then
    step networks_standard "$bin/perforate" bench --suite standard --device gpu --runs 2
else
    for model in resnet18 vgg16; do
        for batch in 1 8 32; do
            step "net_${model}_b${batch}" "$bin/perforate" bench "$model" --device gpu --batch "$batch" --q 0.5 --runs 10 \
                ${peak:+--peak-gflops "$peak"}
        done
    done
fi

if [ "$quick" != 1 ] && python3 -c 'import torch, torchvision, onnx, onnxruntime' 2>/dev/null; then
    models=${ZOO_MODELS:-resnet18,mobilenet_v2,vgg11,efficientnet_b0,shufflenet_v2_x0_5,convnext_tiny}
    exporters=${ZOO_EXPORTERS:-ts17}
    step onnx_gpu_parity python3 benches/peers/zoo.py "$out/zoo" --models "$models" --exporters "$exporters" \
        --device gpu --perforate "$bin/perforate"
    for model in mobilenet_v2 resnet18; do
        file=$(ls "$out/zoo/$model".*.onnx 2>/dev/null | head -1)
        [ -n "$file" ] || continue
        for batch in 1 8; do
            step "onnx_${model}_b${batch}" "$bin/perforate" bench "$file" --device gpu --batch "$batch" --q 0.5 --runs 10
        done
    done
    rm -f "$out"/zoo/*.onnx "$out"/zoo/*.npy
fi
echo "== $failed step(s) failed; outputs in $out"
exit "$failed"
