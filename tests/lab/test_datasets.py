import numpy as np
import pytest

from lab.datasets import DATASETS, load_dataset


@pytest.mark.parametrize("name", DATASETS)
def test_datasets_are_standardised_seeded_and_labelled(name):
    X, y, task = load_dataset(name, n=120, seed=3)
    assert X.shape[0] == y.shape[0] == 120 and np.all(np.isfinite(X))
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-12)
    spread = X.std(axis=0)
    assert np.all(np.isclose(spread, 1.0) | (spread == 0))  # digits has constant pixels
    if task == "classification":
        assert set(np.unique(y)) == {-1.0, 1.0}
    else:
        assert y.std() == pytest.approx(1.0)
    X2, y2, _ = load_dataset(name, n=120, seed=3)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)


def test_full_bundled_sizes_and_bad_arguments():
    assert load_dataset("breast_cancer")[0].shape == (569, 30)
    with pytest.raises(ValueError, match="name"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="n:"):
        load_dataset("moons", n=1)
