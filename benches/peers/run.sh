#!/usr/bin/env bash
# Peer comparison: perforate's CPU executor side by side with onnxruntime on the same ONNX
# files (issue 11's benchmark). Makes a Python venv with onnxruntime and torch (for the
# export) under target/peers-venv, writes the models into target/peers/ (the trained
# Fashion-MNIST networks rebuilt from experiments/models/*.json, and torchvision ResNet-18,
# VGG-11, SqueezeNet 1.1, GoogLeNet and MobileNetV2 with seeded random weights), builds the
# release binary and prints one markdown table (results also in target/peers/results.json).
#
#   benches/peers/run.sh            # every model, batch 1 and 64 where listed, best of 15
#   benches/peers/run.sh --quick    # batch 1 only, best of 3 (a smoke test)
#
# Run it on an otherwise idle machine: the table is only as good as the quiet it ran in.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=target/peers-venv
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r benches/peers/requirements.txt
fi
mkdir -p target/peers
missing=0
for m in fashion_nin fashion_vgg fashion_resnet resnet18 vgg11 squeezenet1_1 googlenet mobilenet_v2; do
    [ -f "target/peers/$m.onnx" ] || missing=1
done
if [ "$missing" = 1 ]; then
    "$VENV/bin/python" benches/peers/export.py target/peers 2>&1 | grep '^wrote' || true
fi
cargo build --release -q --bin perforate --example kernel_peak
"$VENV/bin/python" benches/peers/compare.py target/peers target/release/perforate "$@"
