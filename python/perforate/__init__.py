"""perforate: PerforatedCNNs (Figurnov et al., NIPS 2016) for trained CNNs.

A convolution is evaluated at a subset of its output positions and the rest are filled by
interpolation, making a network 2-4x cheaper at a known accuracy cost. Models come from
ONNX files, perforate JSON files or the built-in zoo; they run on the CPU or on any GPU
through wgpu (Vulkan, Metal, DX12, GL).

    >>> import numpy as np, perforate
    >>> model = perforate.load("fashion_vgg")            # or "model.onnx"
    >>> images, labels = perforate.fashion_mnist(train=True)
    >>> steps = model.search(images[-500:], labels[-500:], target_speedup=2)
    >>> probs = model.run(images[:8], device="cpu")      # numpy in, numpy out

Every error the library reports is raised as ``perforate.PerforateError`` with its message.
The GIL is released while a network runs, searches or trains.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import _native
from ._native import PerforateError, adapters

__all__ = ["Model", "PerforateError", "adapters", "fashion_mnist", "load"]


def _images(model: "Model", x: Any) -> np.ndarray:
    """Any float/int array of images as C-contiguous float32 [N, C, H, W]."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise ValueError(f"images must be numbers, got dtype {a.dtype}")
    c, h, w = model.input_shape
    if a.ndim == 3 and c == 1:
        a = a[:, None, :, :]
    if a.ndim != 4 or a.shape[1:] != (c, h, w):
        raise ValueError(f"images have shape {a.shape}; {model.name} takes [N, {c}, {h}, {w}]")
    return np.ascontiguousarray(a, dtype=np.float32)


def _data(images: Any, labels: Any, train: bool) -> Tuple[Any, Any]:
    """Images and labels as given, or read from a data set named as the command line does:
    "fashion" (Debian's Fashion-MNIST) or a folder of IDX files (train- or t10k- files; a
    folder with only one split serves both)."""
    if not isinstance(images, (str, os.PathLike)):
        if labels is None:
            raise ValueError("labels are needed with an array of images")
        return images, labels
    if labels is not None:
        raise ValueError("labels come from the data set when images name one")
    spec = os.fspath(images)
    directory = None if spec == "fashion" else spec
    if directory is not None and not os.path.isdir(directory):
        raise ValueError(f"data set '{spec}' is neither 'fashion' nor a folder of IDX files")
    try:
        return fashion_mnist(train=train, directory=directory)
    except PerforateError:
        if directory is None:
            raise
        return fashion_mnist(train=not train, directory=directory)


def _labels(y: Any, n: int) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1 or a.shape[0] != n or a.dtype.kind not in "iu":
        raise ValueError(f"labels must be {n} integers (one per image), got {a.dtype} {a.shape}")
    if n and a.min() < 0:
        raise ValueError("labels must not be negative")
    return np.ascontiguousarray(a, dtype=np.uint32)


class Model:
    """A network and its perforation. Build one with :func:`load`."""

    def __init__(self, native: Any) -> None:
        self._m = native

    def __repr__(self) -> str:
        return repr(self._m)

    @property
    def name(self) -> str:
        """The network's name."""
        return self._m.name

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        """One image: (channels, height, width)."""
        return self._m.input_shape

    @property
    def theoretical_speedup(self) -> float:
        """Dense FLOPs / perforated FLOPs."""
        return self._m.theoretical_speedup

    def perforate(self, q: float = 0.5, strategy: str = "uniform", seed: int = 1,
                  interpolation: str = "nearest") -> List[str]:
        """Perforates every perforable conv, keeping fraction ``q`` of its outputs.

        ``strategy``: "uniform", "grid" or "pooling_structure" (impact masks come from
        :meth:`search`); ``interpolation``: "nearest", "zeros" or "barycentric".
        Returns the names of the perforated convs."""
        return self._m.perforate(q, strategy, seed, interpolation)

    def search(self, images: Any, labels: Any = None, target_speedup: float = 2.0, strategy: str = "impact",
               cost: str = "flops", seed: int = 1, batch: int = 250, max_steps: int = 200) -> List[Dict[str, Any]]:
        """The greedy network-wide search: perforates step by step, scoring candidates on
        the labelled ``images``, until ``target_speedup`` (by ``cost``: "flops", "cpu" or
        "gpu" latency). The model becomes the result; returns one dict per step.
        ``images`` may also name a data set ("fashion" or a folder of IDX files; its
        training split, all of it: slice arrays to score on fewer)."""
        images, labels = _data(images, labels, train=True)
        x = _images(self, images)
        return self._m.search(x, _labels(labels, len(x)), target_speedup, strategy, cost, seed, batch, max_steps)

    def finetune(self, images: Any, labels: Any = None, epochs: int = 1, lr: float = 1e-3,
                 batch_size: int = 64, seed: int = 1) -> List[Dict[str, Any]]:
        """Fine-tunes the weights with the masks fixed; returns one dict per epoch.
        ``images`` may name a data set, as in :meth:`search` (its training split)."""
        images, labels = _data(images, labels, train=True)
        x = _images(self, images)
        return self._m.finetune(x, _labels(labels, len(x)), epochs, lr, batch_size, seed)

    def evaluate(self, images: Any, labels: Any = None, batch: int = 250) -> Dict[str, Any]:
        """Loss, top-1 and top-5 error on labelled images, or on a named data set's test
        split (as in :meth:`search`)."""
        images, labels = _data(images, labels, train=False)
        x = _images(self, images)
        return self._m.evaluate(x, _labels(labels, len(x)), batch)

    def save_plan(self, path: str) -> None:
        """Writes the perforation (masks, seeds, a hash of the weights) as a plan file."""
        self._m.save_plan(str(path))

    def load_plan(self, path: str) -> None:
        """Applies a plan file written by :meth:`save_plan` or ``perforate search``."""
        self._m.load_plan(str(path))

    def save(self, path: str) -> None:
        """Writes the network with its weights as a perforate JSON model."""
        self._m.save(str(path))

    def report(self) -> Dict[str, Any]:
        """Per layer: kept fraction, strategy, FLOPs; and the theoretical speedup."""
        return self._m.report()

    def run(self, x: Any, device: str = "cpu") -> np.ndarray:
        """Runs the network on images ``x`` ([N, C, H, W], any float or int dtype; [N, H, W]
        for one channel) on "cpu" or "gpu"; returns float32. The executor for (N, device)
        is compiled once and reused until the model changes."""
        x = _images(self, x)
        out = np.empty(self._m.output_shape(len(x)), dtype=np.float32)
        self._m.run_into(x, out, device)
        return out


def load(spec: str) -> Model:
    """Loads a model: an ``.onnx`` file (either PyTorch exporter, opsets 9-21), a perforate
    ``.json`` network, or a zoo name ("resnet18", "vgg16", "fashion_vgg", ...: random weights)."""
    return Model(_native.load(str(spec)))


def fashion_mnist(train: bool = True, directory: str | None = None) -> Tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST (Debian: ``apt-get install dataset-fashion-mnist``, or the IDX files in
    ``directory``), normalised as the shipped models expect: images float32 [N, 1, 28, 28],
    labels uint32 [N]."""
    images, labels, n = _native.fashion_mnist_raw(train, directory)
    x = np.frombuffer(bytes(images), dtype=np.float32).reshape(n, 1, 28, 28)
    return x, np.frombuffer(bytes(labels), dtype=np.uint32)
