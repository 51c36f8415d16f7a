"""Side by side with onnxruntime on the same ONNX files: prints one markdown table.

For each model and batch: onnxruntime (CPUExecutionProvider, intra_op_num_threads =
THREADS, sequential execution, all graph optimisations), then `perforate bench` on the
CPU executor (dense, and every perforable conv at q = 1/2 and q = 1/4), each the best of
RUNS timed runs after a warm-up, one model after the other on an otherwise idle machine.
The runs are split into ROUNDS rounds (default 3) that alternate the runtimes (onnxruntime,
then perforate at q = 1/2 with its dense runs, then at q = 1/4), each figure the best over
all rounds: on a shared host a slow spell then weighs on both sides of a ratio alike.

GFLOP/s counts the model's conv and linear FLOPs (2 per multiply-add, `perforate info`).
Peak = cores x 2 FMA units x 16 fp32 lanes (AVX-512) x 2 FLOPs x the clock that
/proc/cpuinfo reports (the nominal clock: turbo can exceed it, so percentages above 100%
are possible). Usage: python compare.py MODELDIR PERFORATE_BIN [--runs N] [--rounds R] [--only M1,M2] [--quick]
"""
import argparse
import json
import os
import subprocess
import time

import numpy as np
import onnxruntime as ort

MODELS = [
    ("fashion_nin", 64), ("fashion_vgg", 64), ("fashion_resnet", 64),
    ("fashion_nin", 1), ("fashion_vgg", 1), ("fashion_resnet", 1),
    ("resnet18", 1), ("resnet18", 64), ("vgg11", 1), ("squeezenet1_1", 1), ("googlenet", 1), ("mobilenet_v2", 1),
]


def peak_gflops(threads, binary):
    """The machine's peak and how it was found: `threads` times the best single-thread rate
    of perforate's packed microkernels on L1-resident panels (`examples/kernel_peak`, built
    beside the binary), which runs at the clock the cores actually hold under AVX-512 load;
    else 2 FMA x 16 lanes x 2 FLOP at /proc/cpuinfo's nominal MHz (on this VM the nominal
    2.3 GHz put onnxruntime at 108% of "peak")."""
    probe = os.path.join(os.path.dirname(binary), "examples", "kernel_peak")
    if os.path.exists(probe):
        out = subprocess.run([probe], capture_output=True, text=True).stdout
        rates = [float(l.split(":")[1].split()[0]) for l in out.splitlines()
                 if "GFLOP/s" in l and "indirect" not in l]
        if rates:
            best = max(rates)
            return threads * best, f"{threads} threads x {best:.0f} GFLOP/s (best microkernel on one " \
                                   f"thread, L1-resident panels: examples/kernel_peak)"
    mhz = 0.0
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                mhz = float(line.split(":")[1])
                break
    peak = threads * 2 * 16 * 2 * mhz / 1000.0
    return peak, f"{threads} cores x 2 FMA x 16 lanes x 2 FLOP x {mhz / 1000:.2f} GHz (nominal)"


def ort_timer(path, batch, threads):
    """An onnxruntime session on `path` at `batch`, warmed up; returns a function that times
    `runs` runs and gives the best in ms."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    shape = [batch] + [d for d in inp.shape[1:]]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    s.run(None, {inp.name: x})

    def best_of(runs):
        best = float("inf")
        for _ in range(runs):
            t = time.perf_counter()
            s.run(None, {inp.name: x})
            best = min(best, time.perf_counter() - t)
        return best * 1e3

    return best_of


def perforate(binary, args):
    out = subprocess.run([binary] + args + ["--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models")
    ap.add_argument("binary")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated model names (default: all)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--quick", action="store_true", help="batch-1 rows and 3 runs only")
    a = ap.parse_args()
    peak, peak_how = peak_gflops(a.threads, a.binary)
    rows = []
    kernel = "?"
    print(f"| model | batch | ORT ms | dense ms | dense / ORT | q=1/2 ms | ORT / q=1/2 | q=1/4 ms | ORT / q=1/4 "
          f"| theor. q=1/2 | meas. q=1/2 | meas./theor. | GFLOP/s dense (ORT) | % peak dense (ORT) |")
    print("|" + " --- |" * 14)
    for name, batch in MODELS:
        if a.quick and batch != 1 or a.only and name not in a.only.split(","):
            continue
        path = os.path.join(a.models, f"{name}.onnx")
        if not os.path.exists(path):
            continue
        runs = 3 if a.quick else a.runs
        rounds = 1 if a.quick else max(1, min(a.rounds, runs))
        per_round = -(-runs // rounds)
        ort_best = ort_timer(path, batch, a.threads)
        info = perforate(a.binary, ["info", path])
        mflop = sum(l["dense_mflops"] or 0.0 for l in info["layers"])
        ort_t, dense, res = float("inf"), float("inf"), {}
        for _ in range(rounds):
            ort_t = min(ort_t, ort_best(per_round))
            for q in (0.5, 0.25):
                out = perforate(a.binary, ["bench", path, "--device", "cpu", "--batch", str(batch), "--q", str(q),
                                           "--runs", str(per_round)])
                r = out["rows"][0]
                kernel = out.get("cpu_kernel", "?")
                dense = min(dense, r["dense_ms"])
                if q not in res or r["perforated_ms"] < res[q]["perforated_ms"]:
                    res[q] = r
        h, f = res[0.5], res[0.25]
        # Measured speedup from the best dense and perforated times over all rounds.
        h = dict(h, measured=dense / h["perforated_ms"])
        gf = mflop * batch / dense
        gf_ort = mflop * batch / ort_t
        row = dict(model=name, batch=batch, ort_ms=ort_t, dense_ms=dense, half_ms=h["perforated_ms"],
                   quarter_ms=f["perforated_ms"], theoretical_half=h["theoretical"], measured_half=h["measured"],
                   gflops=gf, gflops_ort=gf_ort, peak=peak)
        rows.append(row)
        print(f"| {name} | {batch} | {ort_t:.2f} | {dense:.2f} | {dense / ort_t:.2f}x | {h['perforated_ms']:.2f} "
              f"| {ort_t / h['perforated_ms']:.2f}x | {f['perforated_ms']:.2f} | {ort_t / f['perforated_ms']:.2f}x "
              f"| {h['theoretical']:.2f} | {h['measured']:.2f} | {h['measured'] / h['theoretical']:.2f} "
              f"| {gf:.0f} ({gf_ort:.0f}) | {100 * gf / peak:.0f}% ({100 * gf_ort / peak:.0f}%) |", flush=True)
    print(f"\nperforate CPU microkernel: {kernel}")
    print(f"peak: {peak_how} = {peak:.0f} GFLOP/s; onnxruntime {ort.__version__}")
    with open(os.path.join(a.models, "results.json"), "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
