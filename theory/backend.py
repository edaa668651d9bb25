"""Choose the array module a solver runs on: numpy on the CPU, cupy on a CUDA GPU.

Solvers are written once against the module returned here (called ``xp``) and hand
results back as numpy arrays through :func:`to_numpy`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

BACKENDS = ("auto", "numpy", "cupy")


def _cupy_with_device() -> ModuleType | None:
    """Return cupy when it imports *and* sees a CUDA device, else None.

    Importing cupy succeeds on machines without a GPU (the first allocation then fails),
    so the import alone says nothing; ``cupy.cuda.is_available()`` is the test.
    """
    try:
        cupy = importlib.import_module("cupy")
        return cupy if cupy.cuda.is_available() else None
    except Exception:  # ImportError, or a CUDA driver/runtime error raised while probing
        return None


def gpu_available() -> bool:
    """True when cupy is installed and a CUDA device is usable."""
    return _cupy_with_device() is not None


def get_backend(name: str = "auto") -> ModuleType:
    """Return the array module for ``name``.

    ``"numpy"`` always works; ``"cupy"`` needs cupy installed (``pip install -e .[gpu]``)
    and a CUDA device, and raises ``RuntimeError`` saying which is missing; ``"auto"``
    picks cupy when both hold and numpy otherwise.
    """
    if name not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {name!r}")
    if name == "numpy":
        return np
    cupy = _cupy_with_device()
    if cupy is not None:
        return cupy
    if name == "auto":
        return np
    try:
        importlib.import_module("cupy")
    except ImportError as exc:
        raise RuntimeError(
            "backend='cupy' needs cupy: install the GPU extra with `pip install -e .[gpu]`, or use backend='numpy'"
        ) from exc
    raise RuntimeError("backend='cupy' needs a CUDA device, and cupy sees none; use backend='numpy' or 'auto'")


def array_module(x) -> ModuleType:
    """The module (numpy or cupy) that owns array ``x``."""
    module = type(x).__module__.split(".")[0]
    return importlib.import_module("cupy") if module == "cupy" else np


def to_numpy(x) -> np.ndarray:
    """Copy ``x`` (numpy, cupy, or anything array-like) to a numpy array on the host."""
    if type(x).__module__.split(".")[0] == "cupy":
        return x.get()
    return np.asarray(x)
