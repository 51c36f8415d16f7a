"""The Python package against the Rust library's own references: onnxruntime's outputs
stored with the ONNX fixtures, the CPU executor for the GPU, numpy conversions, errors."""

import os
import threading
from pathlib import Path

import numpy as np
import pytest

import perforate

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "onnx"
SAMPLE = ROOT / "data" / "fashion-mnist-sample"
MODEL = ROOT / "experiments" / "models" / "fashion_vgg.json"


def gpu_or_skip():
    if perforate.adapters():
        return True
    if os.environ.get("PERFORATE_REQUIRE_GPU") == "1":
        pytest.fail("PERFORATE_REQUIRE_GPU=1 but no GPU adapter is usable")
    pytest.skip("no GPU adapter")


@pytest.mark.parametrize("name", ["nin_opset13", "resnet_like", "torch_resnet", "non_finite"])
def test_onnx_fixtures_match_onnxruntime(name):
    model = perforate.load(FIXTURES / f"{name}.onnx")
    x = np.load(FIXTURES / f"{name}.input.npy")
    want = np.load(FIXTURES / f"{name}.out.npy")
    got = model.run(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-4)


def test_numpy_inputs_of_any_layout_and_dtype():
    model = perforate.load(MODEL)
    images, _ = perforate.fashion_mnist(train=False, directory=str(SAMPLE))
    x = images[:4]
    base = model.run(x)
    assert base.shape == (4, 10, 1, 1)
    np.testing.assert_array_equal(model.run(x.astype(np.float64)), base)
    np.testing.assert_array_equal(model.run(x[:, 0]), base)  # [N, H, W] for one channel
    strided = np.asfortranarray(x)  # not C-contiguous: copied once, same result
    np.testing.assert_array_equal(model.run(strided), base)
    ints = (np.arange(2 * 28 * 28) % 7).reshape(2, 1, 28, 28).astype(np.int32)
    np.testing.assert_array_equal(model.run(ints), model.run(ints.astype(np.float32)))
    np.testing.assert_allclose(base.sum(axis=1).ravel(), 1.0, rtol=1e-5)  # softmax output


def test_search_finetune_and_plan_round_trip(tmp_path):
    model = perforate.load(MODEL)
    images, labels = perforate.fashion_mnist(train=False, directory=str(SAMPLE))
    dense = model.evaluate(images, labels)
    steps = model.search(images[:200], labels[:200], target_speedup=2.0)
    assert steps[-1]["speedup"] >= 2.0 and model.theoretical_speedup >= 2.0
    report = model.report()
    assert report["theoretical_speedup"] == pytest.approx(model.theoretical_speedup)
    assert any(layer["kept_fraction"] < 1.0 for layer in report["layers"])
    before = model.evaluate(images, labels)
    assert before["top1_error"] >= dense["top1_error"] - 0.02
    logs = model.finetune(images[200:456], labels[200:456], epochs=1, lr=1e-3)
    assert len(logs) == 1 and np.isfinite(logs[0]["train_loss"])
    plan = tmp_path / "plan.json"
    tuned = tmp_path / "tuned.json"
    model.save_plan(plan)
    model.save(tuned)
    again = perforate.load(tuned)
    again.load_plan(plan)
    assert again.theoretical_speedup == pytest.approx(model.theoretical_speedup)
    np.testing.assert_array_equal(again.run(images[:8]), model.run(images[:8]))


def test_data_sets_by_name():
    model = perforate.load(MODEL)
    # The sample folder holds only the test split, which then serves both.
    by_name = model.evaluate(str(SAMPLE))
    images, labels = perforate.fashion_mnist(train=False, directory=str(SAMPLE))
    assert by_name == model.evaluate(images, labels)
    assert by_name["images"] == 1000
    with pytest.raises(ValueError, match="neither 'fashion' nor a folder"):
        model.evaluate("no/such/folder")
    with pytest.raises(ValueError, match="labels are needed"):
        model.evaluate(images)
    with pytest.raises(ValueError, match="labels come from the data set"):
        model.evaluate(str(SAMPLE), labels)


def test_gpu_matches_cpu():
    gpu_or_skip()
    model = perforate.load("fashion_vgg")
    model.perforate(0.5, strategy="grid", seed=3)
    x = np.random.default_rng(1).uniform(-1, 1, (3, 1, 28, 28))
    np.testing.assert_allclose(model.run(x, device="gpu"), model.run(x, device="cpu"), rtol=1e-4, atol=1e-5)


def test_runs_from_threads_agree():
    model = perforate.load("fashion_nin")
    model.perforate(0.5)
    x = np.random.default_rng(2).uniform(-1, 1, (2, 1, 28, 28)).astype(np.float32)
    want = model.run(x)
    results = [None] * 4

    def work(i):
        results[i] = model.run(x)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, want)


def test_errors_are_exceptions_with_the_message():
    model = perforate.load("fashion_vgg")
    with pytest.raises(ValueError, match=r"takes \[N, 1, 28, 28\]"):
        model.run(np.zeros((2, 3, 28, 28)))
    with pytest.raises(ValueError, match="unknown device"):
        model.run(np.zeros((1, 1, 28, 28)), device="tpu")
    with pytest.raises(ValueError, match="unknown strategy"):
        model.perforate(0.5, strategy="magic")
    with pytest.raises(perforate.PerforateError, match="kept fraction|q|fraction"):
        model.perforate(1.5)
    with pytest.raises(perforate.PerforateError, match="cannot read"):
        perforate.load("no/such/model.onnx")
    with pytest.raises(perforate.PerforateError, match="not a .onnx or .json"):
        perforate.load("no_such_zoo_net")
    with pytest.raises(ValueError, match="labels"):
        model.evaluate(np.zeros((2, 1, 28, 28)), np.array([0.5, 1.5]))
