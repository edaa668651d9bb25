"""Small datasets for the theory experiments: scikit-learn's bundled ones (no download) and seeded synthetic sets.

Features are standardised (zero mean, unit variance per column). Classification labels are -1/+1;
regression targets are standardised too.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

DATASETS = ("breast_cancer", "digits", "diabetes", "moons", "planted_relu")
Dataset = Literal["breast_cancer", "digits", "diabetes", "moons", "planted_relu"]


def _standardise(values: np.ndarray) -> np.ndarray:
    spread = values.std(axis=0)
    return (values - values.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


def load_dataset(name: str, *, n: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(X, y, task) with task "classification" (y in {-1, +1}) or "regression".

    ``n`` subsamples the bundled sets (seeded) and sets the size of the synthetic ones (default 200).
    ``digits`` is 0-4 against 5-9; ``moons`` is two interleaved half circles in 2-D (noise 0.2);
    ``planted_relu`` is y = a random 4-neuron ReLU network of 10 Gaussian features, plus noise 0.1.
    """
    if name not in DATASETS:
        raise ValueError(f"name: expected one of {DATASETS}, got {name!r}")
    if n is not None and not (isinstance(n, int | np.integer) and n >= 2):
        raise ValueError(f"n: expected an integer >= 2 or None, got {n!r}")
    rng = np.random.default_rng(seed)
    if name in ("moons", "planted_relu"):
        size = 200 if n is None else int(n)
        if name == "moons":
            from sklearn.datasets import make_moons

            X, labels = make_moons(size, noise=0.2, random_state=seed)
            return _standardise(X), 2.0 * labels - 1.0, "classification"
        X = rng.standard_normal((size, 10))
        hidden, output = rng.standard_normal((10, 4)), rng.standard_normal(4)
        y = np.maximum(X @ hidden, 0.0) @ output + 0.1 * rng.standard_normal(size)
        return _standardise(X), _standardise(y), "regression"
    from sklearn import datasets

    if name == "breast_cancer":
        X, target = datasets.load_breast_cancer(return_X_y=True)
        y, task = 2.0 * target - 1.0, "classification"
    elif name == "digits":
        X, target = datasets.load_digits(return_X_y=True)
        y, task = np.where(target >= 5, 1.0, -1.0), "classification"
    else:
        X, target = datasets.load_diabetes(return_X_y=True)
        y, task = target.astype(float), "regression"
    if n is not None and n < len(y):
        keep = np.sort(rng.choice(len(y), size=int(n), replace=False))
        X, y = X[keep], y[keep]
    return _standardise(X.astype(float)), (_standardise(y) if task == "regression" else y), task
