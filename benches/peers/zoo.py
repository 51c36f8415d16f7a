"""Tries torchvision classifiers as a new user would: export with either PyTorch exporter,
run onnxruntime, run `perforate classify`, compare.

Usage (from the repository root, in the peers venv of run.sh):
    python benches/peers/zoo.py OUTDIR [--models a,b] [--exporters ts9,ts11,ts13,ts17,dynamo18]
        [--device cpu|gpu]
Writes OUTDIR/<model>.<exporter>.onnx with .input.npy and .out.npy (onnxruntime's), then prints
one line per model and exporter: loads or not (the first line of the error), and the largest
relative difference to onnxruntime. Random (seeded) weights, eval mode, batch 2, dynamic batch.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import torch
import torchvision.models as tvm
import torchvision.models.segmentation as tvs


class Out(torch.nn.Module):
    """A segmentation model's "out" map as the one output."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]

def vit_b_16():
    """ViT-B/16 with a random head (torchvision starts it at zero: every output would be 0)."""
    model = tvm.vit_b_16()
    torch.nn.init.normal_(model.heads.head.weight, 0, 0.02)
    return model


MODELS = {
    "alexnet": (lambda: tvm.alexnet(), 224),
    "vgg11": (lambda: tvm.vgg11(), 224),
    "resnet18": (lambda: tvm.resnet18(), 224),
    "resnet50": (lambda: tvm.resnet50(), 224),
    "squeezenet1_1": (lambda: tvm.squeezenet1_1(), 224),
    "googlenet": (lambda: tvm.googlenet(aux_logits=False, init_weights=True), 224),
    "inception_v3": (lambda: tvm.inception_v3(aux_logits=False, init_weights=True), 299),
    "densenet121": (lambda: tvm.densenet121(), 224),
    "mobilenet_v2": (lambda: tvm.mobilenet_v2(), 224),
    "mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(), 224),
    "shufflenet_v2_x0_5": (lambda: tvm.shufflenet_v2_x0_5(), 224),
    "mnasnet0_5": (lambda: tvm.mnasnet0_5(), 224),
    "efficientnet_b0": (lambda: tvm.efficientnet_b0(), 224),
    "regnet_y_400mf": (lambda: tvm.regnet_y_400mf(), 224),
    "resnext50_32x4d": (lambda: tvm.resnext50_32x4d(), 224),
    "convnext_tiny": (lambda: tvm.convnext_tiny(), 224),
    # More classifiers (not in the default list; `--models more`).
    "mobilenet_v3_large": (lambda: tvm.mobilenet_v3_large(), 160),
    "shufflenet_v2_x1_0": (lambda: tvm.shufflenet_v2_x1_0(), 160),
    "squeezenet1_0": (lambda: tvm.squeezenet1_0(), 160),
    "regnet_x_400mf": (lambda: tvm.regnet_x_400mf(), 160),
    "mnasnet1_0": (lambda: tvm.mnasnet1_0(), 160),
    "efficientnet_v2_s": (lambda: tvm.efficientnet_v2_s(), 160),
    "densenet169": (lambda: tvm.densenet169(), 160),
    "wide_resnet50_2": (lambda: tvm.wide_resnet50_2(), 160),
    # Vision transformers (`--models transformers`; attention needs opset 14 or later with
    # the TorchScript exporter, which only writes it with gradients enabled).
    "vit_b_16": (lambda: vit_b_16(), 224),
    "swin_t": (lambda: tvm.swin_t(), 224),
    "swin_v2_t": (lambda: tvm.swin_v2_t(), 256),
    "maxvit_t": (lambda: tvm.maxvit_t(), 224),
    # Segmentation (bilinear Resize of the logits back to the input size; the "out" head).
    "lraspp_mobilenet_v3_large": (lambda: Out(tvs.lraspp_mobilenet_v3_large(weights_backbone=None)), 160),
    "fcn_resnet50": (lambda: Out(tvs.fcn_resnet50(weights_backbone=None)), 160),
    "deeplabv3_mobilenet_v3_large": (lambda: Out(tvs.deeplabv3_mobilenet_v3_large(weights_backbone=None)), 160),
}
SEGMENTATION = ["lraspp_mobilenet_v3_large", "fcn_resnet50", "deeplabv3_mobilenet_v3_large"]
TRANSFORMERS = ["vit_b_16", "swin_t", "swin_v2_t", "maxvit_t"]
MORE = ["mobilenet_v3_large", "shufflenet_v2_x1_0", "squeezenet1_0", "regnet_x_400mf", "mnasnet1_0",
        "efficientnet_v2_s", "densenet169", "wide_resnet50_2"]
EXPORTERS = ["ts9", "ts11", "ts13", "ts17", "dynamo18"]  # also accepted: ts<N>, dynamo<N>


def export(model, size, path, exporter):
    x = torch.randn(2, 3, size, size)
    kw = dict(input_names=["input"], output_names=["logits"])
    if exporter.startswith("ts"):
        torch.onnx.export(model, (x,), path, dynamo=False, opset_version=int(exporter[2:]),
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, **kw)
    else:
        torch.onnx.export(model, (x,), path, dynamo=True, opset_version=int(exporter[6:]),
                          dynamic_shapes=({0: torch.export.Dim("N", min=1, max=64)},),
                          external_data=False, **kw)
    return x.numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--models", default=",".join(m for m in MODELS if m not in SEGMENTATION + MORE + TRANSFORMERS),
                    help="comma-separated; 'segmentation' for the three segmentation models, "
                         "'more' for eight more classifiers, 'transformers' for ViT, Swin, SwinV2, MaxViT")
    ap.add_argument("--exporters", default=",".join(EXPORTERS))
    ap.add_argument("--perforate", default="target/release/perforate")
    ap.add_argument("--no-export", action="store_true", help="reuse the files in OUTDIR")
    ap.add_argument("--device", default="cpu", help="perforate's executor: cpu or gpu")
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    rows = []
    names = {"segmentation": SEGMENTATION, "more": MORE, "transformers": TRANSFORMERS}.get(args.models) or args.models.split(",")
    for name in names:
        build, size = MODELS[name]
        for ex in args.exporters.split(","):
            base = os.path.join(args.outdir, f"{name}.{ex}")
            if not args.no_export or not os.path.exists(base + ".onnx"):
                torch.manual_seed(2016)
                model = build().eval()
                try:
                    with torch.set_grad_enabled(name in TRANSFORMERS):
                        x = export(model, size, base + ".onnx", ex)
                except Exception as e:  # noqa: BLE001 - report and go on
                    rows.append((name, ex, "export failed: " + str(e).splitlines()[0][:80], ""))
                    print(rows[-1], flush=True)
                    continue
                sess = ort.InferenceSession(base + ".onnx", providers=["CPUExecutionProvider"])
                y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
                np.save(base + ".input.npy", x)
                np.save(base + ".out.npy", y)
            r = subprocess.run([args.perforate, "run", base + ".onnx", base + ".input.npy",
                                "--output", base + ".ours.npy", "--top", "1", "--device", args.device],
                               capture_output=True, text=True)
            if r.returncode != 0:
                msg = (r.stderr.strip().splitlines() or ["?"])[0]
                rows.append((name, ex, "FAIL", msg[:300]))
            else:
                ours = np.load(base + ".ours.npy").reshape(-1)
                ref = np.load(base + ".out.npy").reshape(-1)
                rel = float(np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-12))
                rows.append((name, ex, "ok" if rel < 1e-4 else "MISMATCH", f"max rel diff {rel:.2e}"))
            print(rows[-1], flush=True)
    ok = sum(r[2] == "ok" for r in rows)
    print(f"\n{ok} of {len(rows)} load and match onnxruntime within 1e-4")
    for r in rows:
        print(f"{r[0]:20} {r[1]:9} {r[2]:9} {r[3]}")
    return 0 if ok == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
