"""Writes the ONNX models of the peer comparison (benches/peers/run.sh) into OUTDIR.

- fashion_nin, fashion_vgg, fashion_resnet: the trained networks of experiments/models/,
  rebuilt layer by layer in PyTorch from their JSON (same weights), exported as ONNX;
- torchvision ResNet-18, VGG-11, SqueezeNet 1.1, GoogLeNet and MobileNetV2 at 224x224 with
  seeded random weights (eval mode).

All go through the torch.export-based exporter (dynamo=True) with a dynamic batch
dimension. Usage: python export.py OUTDIR
"""
import json
import os
import sys

import torch
from torch import nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FromJson(nn.Module):
    """A network JSON (src/network) as a PyTorch module: the DAG evaluated in order."""

    def __init__(self, net):
        super().__init__()
        self.layers = net["layers"]
        self.output = net["output"]
        self.params = nn.ParameterDict()
        for i, l in enumerate(self.layers):
            op = l["op"]
            t = op["type"]
            if t == "conv":
                kh, kw = op["kernel"]
                w = torch.tensor(op["weights"]).reshape(op["out_channels"], -1, kh, kw)
                self.params[f"w{i}"] = nn.Parameter(w, requires_grad=False)
                if op.get("bias") is not None:
                    self.params[f"b{i}"] = nn.Parameter(torch.tensor(op["bias"]), requires_grad=False)
            elif t == "linear":
                w = torch.tensor(op["weights"]).reshape(op["out_features"], -1)
                self.params[f"w{i}"] = nn.Parameter(w, requires_grad=False)
                self.params[f"b{i}"] = nn.Parameter(torch.tensor(op["bias"]), requires_grad=False)
            elif t == "batch_norm":
                for k in ("scale", "shift", "mean", "var"):
                    self.params[f"{k}{i}"] = nn.Parameter(torch.tensor(op[k]), requires_grad=False)
        self.in_channels = net["input"]["channels"]

    def forward(self, x):
        vals = {"input": x}
        for i, l in enumerate(self.layers):
            op = l["op"]
            t = op["type"]
            ins = [vals[n] for n in l["inputs"]]
            a = ins[0]
            if t == "conv":
                g = op["groups"]
                w = self.params[f"w{i}"]
                top, left, bottom, right = op["pads"]
                if top == bottom and left == right:
                    y = F.conv2d(a, w, self.params[f"b{i}"] if f"b{i}" in self.params else None,
                                 tuple(op["stride"]), (top, left), tuple(op["dilation"]), g)
                else:
                    y = F.conv2d(F.pad(a, (left, right, top, bottom)), w,
                                 self.params[f"b{i}"] if f"b{i}" in self.params else None,
                                 tuple(op["stride"]), 0, tuple(op["dilation"]), g)
            elif t == "relu":
                y = F.relu(a)
            elif t == "batch_norm":
                y = F.batch_norm(a, self.params[f"mean{i}"], self.params[f"var{i}"], self.params[f"scale{i}"],
                                 self.params[f"shift{i}"], False, 0.0, op["epsilon"])
            elif t in ("max_pool", "avg_pool"):
                top, left, bottom, right = op["pads"]
                assert top == bottom and left == right, "symmetric pooling pads only"
                if t == "max_pool":
                    y = F.max_pool2d(a, tuple(op["kernel"]), tuple(op["stride"]), (top, left), 1, op["ceil_mode"])
                else:
                    y = F.avg_pool2d(a, tuple(op["kernel"]), tuple(op["stride"]), (top, left), op["ceil_mode"],
                                     op["count_include_pad"])
            elif t == "global_avg_pool":
                y = F.adaptive_avg_pool2d(a, 1)
            elif t == "flatten":
                y = torch.flatten(a, 1)
            elif t == "linear":
                y = F.linear(a.flatten(1), self.params[f"w{i}"], self.params[f"b{i}"])
            elif t == "softmax":
                y = F.softmax(a, dim=1)
            elif t == "dropout":
                y = a
            elif t == "add":
                y = ins[0] + ins[1]
            elif t == "concat":
                y = torch.cat(ins, 1)
            else:
                raise SystemExit(f"export.py: layer type '{t}' is not supported")
            vals[l["name"]] = y
        return vals[self.output]


def export(model, shape, path):
    model.eval()
    x = torch.randn(2, *shape)
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(model, (x,), path, dynamo=True, input_names=["input"], output_names=["output"],
                      dynamic_shapes={"x": {0: batch}}, external_data=False)
    print(f"wrote {path}")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(2016)
    only = sys.argv[2:]
    for name in ("fashion_nin", "fashion_vgg", "fashion_resnet"):
        if only and name not in only:
            continue
        net = json.load(open(os.path.join(ROOT, "experiments", "models", f"{name}.json")))
        i = net["input"]
        export(FromJson(net), (i["channels"], i["height"], i["width"]), os.path.join(out, f"{name}.onnx"))
    import torchvision.models as tv
    for name, ctor in (("resnet18", tv.resnet18), ("vgg11", tv.vgg11), ("squeezenet1_1", tv.squeezenet1_1),
                       ("googlenet", lambda: tv.googlenet(aux_logits=False, init_weights=True)),
                       ("mobilenet_v2", tv.mobilenet_v2)):
        if only and name not in only:
            continue
        export(ctor(), (3, 224, 224), os.path.join(out, f"{name}.onnx"))


if __name__ == "__main__":
    main()
