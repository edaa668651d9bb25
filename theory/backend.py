"""Choose the array module a solver runs on: numpy on the CPU, cupy on a CUDA GPU.

Solvers are written once against the module returned here (called ``xp``) and hand
results back as numpy arrays through :func:`to_numpy`. On the CPU, :func:`blas_thread_limits` sets
how many threads numpy's BLAS uses (and keeps every other BLAS library loaded at one).
"""

from __future__ import annotations

import importlib
import os
from contextlib import ExitStack, nullcontext
from types import ModuleType

import numpy as np
from threadpoolctl import ThreadpoolController

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


def blas_thread_limits(threads: int | None):
    """A context giving numpy's BLAS ``threads`` threads and every other BLAS library loaded one (None: no change).

    numpy and scipy wheels each bundle their own OpenBLAS. When both are threaded and calls alternate between them
    (numpy's products, scipy's dsymv and Cholesky), each one's idle workers spin on the cores the other needs: on
    2 cores an ADMM iteration took 11 ms instead of 0.6 ms (breast_cancer, P = 100). Where numpy and scipy share
    one BLAS, that one gets ``threads``.
    """
    if threads is None:
        return nullcontext()
    controller = ThreadpoolController()
    libraries = [library for library in controller.lib_controllers if library.user_api == "blas"]
    home = os.path.dirname(os.path.realpath(np.__file__))  # wheels keep numpy's BLAS in numpy.libs beside it
    numpys = [library for library in libraries if os.path.realpath(library.filepath).startswith(home)]
    limits = ExitStack()
    for library in libraries:
        count = threads if library in numpys or not numpys else 1
        limits.enter_context(controller.select(filepath=library.filepath).limit(limits=count))
    return limits
