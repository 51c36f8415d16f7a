"""The native peer on an NVIDIA GPU: PyTorch (cuDNN, cuBLAS) in fp32 with TF32 off, so its
arithmetic matches ours. Prints one JSON object: the fp32 GEMM rate (8192^3, the practical
peak for --peak-gflops) and per model and batch the best latency in ms (CUDA events, best of
20 after 5 warm-up runs).

Usage (on the device machine, whose image has torch and torchvision):
    python3 benches/peers/torch_cuda.py [--models resnet18,vgg16,mobilenet_v2] [--batches 1,8,32]
"""
import argparse
import json
import sys

import torch
import torchvision.models as tvm


def best_ms(f, runs=20, warm=5):
    for _ in range(warm):
        f()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        f()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet18,vgg16,mobilenet_v2")
    ap.add_argument("--batches", default="1,8,32")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device"}))
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    n = 8192
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    ms = best_ms(lambda: a @ b, runs=10, warm=3)
    out["fp32_gemm_8192_gflops"] = 2 * n**3 / ms / 1e6
    del a, b
    out["models"] = []
    for name in args.models.split(","):
        model = getattr(tvm, name)().eval().cuda()
        for batch in map(int, args.batches.split(",")):
            x = torch.randn(batch, 3, 224, 224, device="cuda")
            with torch.no_grad():
                ms = best_ms(lambda: model(x))
            out["models"].append({"model": name, "batch": batch, "ms": ms})
        del model
        torch.cuda.empty_cache()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
