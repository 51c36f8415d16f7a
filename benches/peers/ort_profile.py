"""onnxruntime's own per-node times for one ONNX file, to read side by side with
`cargo run --release --example layer_times -- MODEL.onnx BATCH` (perforate's per-step times).

    target/peers-venv/bin/python benches/peers/profile.py target/peers/resnet18.onnx 1

Runs the model 30 times with `SessionOptions.enable_profiling` (CPUExecutionProvider, 2
intra-op threads, as the peer table) and prints each node's lower-quartile kernel time in
execution order. Profiling adds overhead to every node, small ones most: compare the larger
nodes, and whole networks with `run.sh`.
"""

import collections
import json
import sys
import tempfile

import numpy as np
import onnxruntime as ort


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: ort_profile.py MODEL.onnx [BATCH]")
    path = sys.argv[1]
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.enable_profiling = True
    so.profile_file_prefix = tempfile.mkdtemp() + "/ort"
    session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    shape[0] = batch
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(30):
        session.run(None, {inp.name: x})
    with open(session.end_profiling()) as f:
        events = json.load(f)
    times = collections.OrderedDict()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            key = (e["name"][: -len("_kernel_time")], e["args"].get("op_name", "?"))
            times.setdefault(key, []).append(e["dur"])
    total = 0.0
    print(f"{'node':<40} {'op':<20} {'ms':>8}")
    for (name, op), durations in times.items():
        ms = sorted(durations)[len(durations) // 4] / 1000
        total += ms
        print(f"{name:<40} {op:<20} {ms:8.3f}")
    print(f"sum of nodes {total:.3f} ms")


if __name__ == "__main__":
    main()
