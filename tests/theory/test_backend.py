import numpy as np
import pytest

from theory.backend import array_module, blas_thread_limits, get_backend, gpu_available, to_numpy


def test_numpy_backend_and_auto_without_gpu():
    assert get_backend("numpy") is np
    if not gpu_available():
        assert get_backend("auto") is np
        assert get_backend() is np


def test_unknown_backend_names_the_argument():
    with pytest.raises(ValueError, match="backend: expected one of"):
        get_backend("jax")


@pytest.mark.skipif(gpu_available(), reason="checks the error raised without a GPU")
def test_cupy_without_gpu_raises_a_clear_error():
    with pytest.raises(RuntimeError, match="backend='cupy' needs"):
        get_backend("cupy")


def test_to_numpy_of_numpy_and_lists():
    x = np.arange(3.0)
    assert to_numpy(x) is x
    np.testing.assert_array_equal(to_numpy([1, 2]), np.array([1, 2]))
    assert array_module(x) is np


@pytest.mark.gpu
def test_cupy_round_trip_on_gpu():
    cupy = get_backend("cupy")
    assert get_backend("auto") is cupy
    x = cupy.arange(4.0) ** 2
    assert array_module(x) is cupy
    np.testing.assert_array_equal(to_numpy(x), np.arange(4.0) ** 2)


def test_only_numpys_blas_is_threaded_and_the_others_get_one_thread():
    import os

    import scipy.linalg  # noqa: F401  (loads scipy's own BLAS, where the wheel bundles one)
    from threadpoolctl import threadpool_info

    def blas_threads():
        return {pool["filepath"]: pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    home = os.path.dirname(os.path.realpath(np.__file__))
    numpys = {path for path in blas_threads() if os.path.realpath(path).startswith(home)}
    before = blas_threads()
    with blas_thread_limits(3):
        inside = blas_threads()
    assert blas_threads() == before
    assert inside == {path: 3 if path in numpys or not numpys else 1 for path in before}
    with blas_thread_limits(None):
        assert blas_threads() == before
