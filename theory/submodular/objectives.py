"""Monotone submodular set functions on a finite ground set (the states of a grid), from Prajapat et al.,
"Submodular Reinforcement Learning" (ICLR 2024): the objectives of its grid experiments.

A set is a bool mask over the S elements; every function takes a batch of masks (B, S) (or one mask (S,)).

* Coverage: F(tau) = sum_{n in U_{s in tau} cov(s)} w(n), with a footprint cov(s) and weights w >= 0.
* Item collection: F(tau) = sum_k min(|I_k n tau|, D_k) for item sets I_k and demands D_k.
* Bayesian experiment design (D-optimal): F(tau) = 1/2 logdet(I + K_tau / eps) = 1/2 logdet(K_tau + eps I)
  - |tau|/2 log eps, the information a GP prior K gains from noisy (variance eps) measurements at tau. The shift
  by the modular term |tau|/2 log eps makes F(empty) = 0 and F monotone; the marginal gain is
  F(s | tau) = 1/2 log(1 + sigma^2_{s|tau} / eps) with the posterior variance sigma^2_{s|tau}.

All are monotone (F(s | A) >= 0) and submodular (F(s | A) >= F(s | B) for A subset of B, s not in B);
:func:`check_submodular` tests both on random nested sets. An element already in the set adds 0.
:meth:`SetFunction.tracker` grows B sets one element at a time and returns the marginal gains incrementally
(coverage: covered-cell masks; items: per-type counts; design: rank-one updates of the posterior covariance).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from theory.submodular.grid import GridWorld

WEIGHTS = ("constant", "bimodal", "gp")
KERNELS = ("matern52", "rbf")


def _masks(mask, n_elements: int) -> tuple[np.ndarray, bool]:
    """``mask`` as a bool (B, S) array, and whether a single (S,) mask was given."""
    array = np.asarray(mask)
    if array.dtype != bool:
        raise TypeError(f"mask: expected a bool array, got dtype {array.dtype}")
    if array.ndim not in (1, 2) or array.shape[-1] != n_elements:
        raise ValueError(f"mask: expected shape ({n_elements},) or (B, {n_elements}), got {array.shape}")
    return np.atleast_2d(array), array.ndim == 1


def _elements(element, batch_size: int, n_elements: int) -> np.ndarray:
    """``element`` (an int or B ints) as an int array of shape (B,)."""
    array = np.asarray(element)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"element: expected integer element indices, got dtype {array.dtype}")
    if np.any(array < 0) or np.any(array >= n_elements):
        raise ValueError(f"element: expected indices in [0, {n_elements}), got {element!r}")
    if array.ndim == 0:
        return np.full(batch_size, int(array))
    if array.shape != (batch_size,):
        raise ValueError(f"element: expected an int or shape ({batch_size},), got shape {array.shape}")
    return array.astype(np.int64)


class GainTracker:
    """The visited sets of B trajectories, grown by one element each per :meth:`add`.

    ``visited`` (B, S) and ``value`` (B,) = F(visited) are kept up to date; ``add`` returns the marginal gains.
    """

    def __init__(self, n_elements: int, batch_size: int) -> None:
        self.visited = np.zeros((batch_size, n_elements), dtype=bool)
        self.value = np.zeros(batch_size)

    def add(self, elements: np.ndarray) -> np.ndarray:
        """Add ``elements[b]`` to set b; return F(s_b | set_b) (0 for a repeat)."""
        rows = np.arange(self.visited.shape[0])
        new = ~self.visited[rows, elements]
        gains = np.zeros(rows.size)
        if new.any():
            gains[new] = self._include(rows[new], elements[new])
        self.visited[rows, elements] = True
        self.value += gains
        return gains

    def _include(self, rows: np.ndarray, elements: np.ndarray) -> np.ndarray:
        """Gains of new ``elements`` for the sets ``rows``; update the objective's running statistics."""
        raise NotImplementedError


class SetFunction(ABC):
    """A normalised (F(empty) = 0) set function on ``n_elements`` elements, evaluated on batches of masks."""

    n_elements: int

    @abstractmethod
    def value(self, mask) -> np.ndarray | float:
        """F(mask) per row of a (B, S) bool mask, or a float for one (S,) mask."""

    @abstractmethod
    def marginal_gain(self, mask, element) -> np.ndarray | float:
        """F(s | A) = F(A u {s}) - F(A) per row, ``element`` an int or one per row."""

    @abstractmethod
    def tracker(self, batch_size: int) -> GainTracker:
        """Empty sets for ``batch_size`` trajectories, grown incrementally."""

    def singleton_values(self) -> np.ndarray:
        """F({s}) for every element: the modular reward r(s) of standard RL on the same task."""
        return np.asarray(self.value(np.eye(self.n_elements, dtype=bool)))


class Coverage(SetFunction):
    """Weighted coverage F(tau) = sum of w(n) over the cells n covered by some s in tau.

    ``footprint`` is a bool (S, N) incidence (``[s, n]``: s covers cell n), ``weights`` (N,) non-negative.
    """

    def __init__(self, footprint, weights) -> None:
        footprint = np.asarray(footprint)
        if footprint.ndim != 2 or footprint.dtype != bool:
            raise ValueError(
                f"footprint: expected a bool (S, N) incidence matrix, got {footprint.dtype} {footprint.shape}"
            )
        weights = np.asarray(weights, dtype=float)
        if weights.shape != (footprint.shape[1],) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError(f"weights: expected {footprint.shape[1]} finite non-negative numbers")
        self.footprint, self.weights = footprint, weights
        self.n_elements = footprint.shape[0]

    def covered(self, mask) -> np.ndarray:
        """Bool (B, N): the cells covered by each set."""
        masks, _ = _masks(mask, self.n_elements)
        return (masks.astype(np.int32) @ self.footprint.astype(np.int32)) > 0

    def value(self, mask):
        masks, single = _masks(mask, self.n_elements)
        values = self.covered(masks) @ self.weights
        return float(values[0]) if single else values

    def marginal_gain(self, mask, element):
        masks, single = _masks(mask, self.n_elements)
        elements = _elements(element, masks.shape[0], self.n_elements)
        gains = (self.footprint[elements] & ~self.covered(masks)) @ self.weights
        return float(gains[0]) if single else gains

    def tracker(self, batch_size: int) -> GainTracker:
        return _CoverageTracker(self, batch_size)


class _CoverageTracker(GainTracker):
    def __init__(self, objective: Coverage, batch_size: int) -> None:
        super().__init__(objective.n_elements, batch_size)
        self.objective = objective
        self.covered = np.zeros((batch_size, objective.footprint.shape[1]), dtype=bool)

    def _include(self, rows, elements):
        newly = self.objective.footprint[elements] & ~self.covered[rows]
        self.covered[rows] |= newly
        return newly @ self.objective.weights


class ItemCollection(SetFunction):
    """F(tau) = sum_k min(|I_k n tau|, D_k): collect up to D_k items of each type k.

    ``membership`` is a bool (K, S) array (``[k, s]``: cell s holds an item of type k), ``demands`` (K,) ints >= 0.
    """

    def __init__(self, membership, demands) -> None:
        membership = np.asarray(membership)
        if membership.ndim != 2 or membership.dtype != bool:
            raise ValueError(f"membership: expected a bool (K, S) array, got {membership.dtype} {membership.shape}")
        demands = np.asarray(demands)
        if demands.shape != (membership.shape[0],) or not np.issubdtype(demands.dtype, np.integer):
            raise ValueError(f"demands: expected {membership.shape[0]} integers, got {demands!r}")
        if np.any(demands < 0):
            raise ValueError(f"demands: expected non-negative integers, got {demands!r}")
        self.membership, self.demands = membership, demands.astype(np.int64)
        self.n_elements = membership.shape[1]

    @property
    def max_value(self) -> int:
        """sum_k min(|I_k|, D_k): every demand met (or every item taken)."""
        return int(np.minimum(self.membership.sum(axis=1), self.demands).sum())

    def counts(self, mask) -> np.ndarray:
        """(B, K) ints: |I_k n tau| per set."""
        masks, _ = _masks(mask, self.n_elements)
        return masks.astype(np.int64) @ self.membership.T.astype(np.int64)

    def value(self, mask):
        masks, single = _masks(mask, self.n_elements)
        values = np.minimum(self.counts(masks), self.demands).sum(axis=1).astype(float)
        return float(values[0]) if single else values

    def marginal_gain(self, mask, element):
        masks, single = _masks(mask, self.n_elements)
        elements = _elements(element, masks.shape[0], self.n_elements)
        unmet = self.counts(masks) < self.demands
        new = ~masks[np.arange(masks.shape[0]), elements]
        gains = (self.membership[:, elements].T & unmet).sum(axis=1) * new
        return float(gains[0]) if single else gains.astype(float)

    def tracker(self, batch_size: int) -> GainTracker:
        return _ItemTracker(self, batch_size)


class _ItemTracker(GainTracker):
    def __init__(self, objective: ItemCollection, batch_size: int) -> None:
        super().__init__(objective.n_elements, batch_size)
        self.objective = objective
        self.counts = np.zeros((batch_size, objective.demands.size), dtype=np.int64)

    def _include(self, rows, elements):
        items = self.objective.membership[:, elements].T
        gains = (items & (self.counts[rows] < self.objective.demands)).sum(axis=1)
        self.counts[rows] += items
        return gains


class ExperimentDesign(SetFunction):
    """D-optimal Bayesian experiment design F(tau) = 1/2 logdet(I + K_tau / eps) (module docstring).

    ``covariance`` is the GP prior covariance K (S, S), symmetric positive semi-definite; ``noise`` = eps > 0.
    """

    def __init__(self, covariance, noise: float = 1e-3) -> None:
        covariance = np.asarray(covariance, dtype=float)
        if covariance.ndim != 2 or covariance.shape[0] != covariance.shape[1]:
            raise ValueError(f"covariance: expected a square (S, S) matrix, got shape {covariance.shape}")
        if not np.all(np.isfinite(covariance)) or not np.allclose(covariance, covariance.T, atol=1e-12):
            raise ValueError("covariance: expected a finite symmetric matrix")
        if np.linalg.eigvalsh(covariance)[0] < -1e-9 * max(1.0, np.abs(covariance).max()):
            raise ValueError("covariance: expected a positive semi-definite matrix")
        if not (isinstance(noise, int | float) and noise > 0):
            raise ValueError(f"noise: expected a positive number, got {noise!r}")
        self.covariance, self.noise = covariance, float(noise)
        self.n_elements = covariance.shape[0]

    def value(self, mask):
        masks, single = _masks(mask, self.n_elements)
        values = np.empty(masks.shape[0])
        for b, row in enumerate(masks):
            index = np.flatnonzero(row)
            gram = np.eye(index.size) + self.covariance[np.ix_(index, index)] / self.noise
            values[b] = 0.5 * np.linalg.slogdet(gram)[1]
        return float(values[0]) if single else values

    def posterior_variance(self, mask, element) -> np.ndarray:
        """sigma^2_{s|tau} = K_ss - k_{s tau} (K_tau + eps I)^{-1} k_{tau s} per row."""
        masks, _ = _masks(mask, self.n_elements)
        elements = _elements(element, masks.shape[0], self.n_elements)
        variances = np.empty(masks.shape[0])
        for b, (row, s) in enumerate(zip(masks, elements, strict=True)):
            index = np.flatnonzero(row)
            cross = self.covariance[index, s]
            prior = self.covariance[s, s]
            if index.size == 0:
                variances[b] = prior
                continue
            factor = cho_factor(self.covariance[np.ix_(index, index)] + self.noise * np.eye(index.size))
            variances[b] = max(prior - cross @ cho_solve(factor, cross), 0.0)
        return variances

    def marginal_gain(self, mask, element):
        masks, single = _masks(mask, self.n_elements)
        elements = _elements(element, masks.shape[0], self.n_elements)
        new = ~masks[np.arange(masks.shape[0]), elements]
        gains = 0.5 * np.log1p(self.posterior_variance(masks, elements) / self.noise) * new
        return float(gains[0]) if single else gains

    def tracker(self, batch_size: int) -> GainTracker:
        return _DesignTracker(self, batch_size)


class _DesignTracker(GainTracker):
    """Posterior covariance Sigma = K - sum_j c_j c_j^T kept through its rank-one factors c_j (a pivoted Cholesky):
    adding s gives c = Sigma[:, s] / sqrt(sigma^2_s + eps) and Sigma_ss drops by c_s^2; O(S |tau|) per element."""

    def __init__(self, objective: ExperimentDesign, batch_size: int) -> None:
        super().__init__(objective.n_elements, batch_size)
        self.objective = objective
        self.variance = np.tile(np.diag(objective.covariance), (batch_size, 1))
        self.factors = np.zeros((batch_size, 8, objective.n_elements))
        self.rank = np.zeros(batch_size, dtype=np.int64)

    def _include(self, rows, elements):
        noise, variance = self.objective.noise, self.variance[rows, elements]
        gains = 0.5 * np.log1p(variance / noise)
        if self.rank.max() + 1 > self.factors.shape[1]:
            self.factors = np.concatenate([self.factors, np.zeros_like(self.factors)], axis=1)
        factors = self.factors[rows]
        explained = np.einsum("bjn,bj->bn", factors, factors[np.arange(rows.size), :, elements])
        column = (self.objective.covariance[elements] - explained) / np.sqrt(variance + noise)[:, None]
        self.factors[rows, self.rank[rows]] = column
        self.rank[rows] += 1
        self.variance[rows] = np.maximum(self.variance[rows] - column**2, 0.0)
        return gains


@dataclass(frozen=True)
class SubmodularityCheck:
    """Outcome of :func:`check_submodular` on ``n_trials`` random triples A subset of B, s not in B.

    ``min_gain`` = min F(s | A) and F(s | B) (>= 0: monotone); ``max_violation`` = max F(s | B) - F(s | A)
    (<= 0: diminishing returns); ``max_value_error`` = max |F(A u s) - F(A) - F(s | A)| (marginal gain consistent).
    """

    n_trials: int
    min_gain: float
    max_violation: float
    max_value_error: float
    tolerance: float

    @property
    def monotone(self) -> bool:
        return self.min_gain >= -self.tolerance

    @property
    def submodular(self) -> bool:
        return self.max_violation <= self.tolerance

    @property
    def consistent(self) -> bool:
        return self.max_value_error <= self.tolerance


def check_submodular(
    objective: SetFunction, n_trials: int = 200, seed: int | np.random.Generator = 0, *, tolerance: float = 1e-9
) -> SubmodularityCheck:
    """Test monotonicity and diminishing returns on random nested sets A subset of B and s not in B.

    Each trial draws densities p_A, p_B ~ U(0, 1/2): A is a Bernoulli(p_A) subset, B adds a Bernoulli(p_B) subset,
    s is uniform outside B (where B would hold every element it is A, or A without element 0).
    """
    if not isinstance(objective, SetFunction):
        raise TypeError(f"objective: expected a SetFunction, got {type(objective).__name__}")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials: expected a positive integer, got {n_trials!r}")
    rng = np.random.default_rng(seed)
    n = objective.n_elements
    small = rng.random((n_trials, n)) < rng.uniform(0, 0.5, (n_trials, 1))
    large = small | (rng.random((n_trials, n)) < rng.uniform(0, 0.5, (n_trials, 1)))
    full = large.all(axis=1)
    large[full] = small[full]
    full = large.all(axis=1)
    small[full, 0] = large[full, 0] = False
    outside = np.where(large, -np.inf, rng.random((n_trials, n)))
    element = np.argmax(outside, axis=1)
    gain_small = np.asarray(objective.marginal_gain(small, element))
    gain_large = np.asarray(objective.marginal_gain(large, element))
    grown = small.copy()
    grown[np.arange(n_trials), element] = True
    value_error = np.abs(np.asarray(objective.value(grown)) - np.asarray(objective.value(small)) - gain_small)
    return SubmodularityCheck(
        n_trials=n_trials,
        min_gain=float(min(gain_small.min(), gain_large.min())),
        max_violation=float(np.max(gain_large - gain_small)),
        max_value_error=float(value_error.max()),
        tolerance=float(tolerance),
    )


# --- instances on a grid


def grid_kernel(grid: GridWorld, *, kind: str = "matern52", lengthscale: float = 2.0, variance: float = 1.0):
    """The (S, S) GP kernel on cell coordinates (in cells): Matern-5/2 k(r) = v (1 + sqrt5 r/l + 5r^2/(3l^2))
    exp(-sqrt5 r/l) or RBF k(r) = v exp(-r^2 / (2 l^2))."""
    if kind not in KERNELS:
        raise ValueError(f"kind: expected one of {KERNELS}, got {kind!r}")
    if not lengthscale > 0 or not variance > 0:
        raise ValueError(f"lengthscale, variance: expected positive numbers, got {lengthscale!r}, {variance!r}")
    points = grid.coordinates()
    distance = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1) / lengthscale
    if kind == "rbf":
        return variance * np.exp(-0.5 * distance**2)
    scaled = np.sqrt(5.0) * distance
    return variance * (1.0 + scaled + scaled**2 / 3.0) * np.exp(-scaled)


def bimodal_weights(grid: GridWorld) -> np.ndarray:
    """w(i, j) = sigmoid(x_i y_j), x = linspace(-1, 1, rows), y = linspace(-1, 1, cols): high at two opposite
    corners (top-left and bottom-right), 1/2 along the middle row and column."""
    x, y = np.linspace(-1, 1, grid.rows), np.linspace(-1, 1, grid.cols)
    return (1.0 / (1.0 + np.exp(-np.outer(x, y)))).reshape(-1)


def gp_weights(
    grid: GridWorld,
    *,
    seed: int | np.random.Generator,
    kind: str = "matern52",
    lengthscale: float = 2.0,
    shift: float = 3.0,
) -> np.ndarray:
    """A unit-variance GP sample f ~ N(0, K) on the cells, shifted: w = max(f + shift, 0)."""
    rng = np.random.default_rng(seed)
    eigenvalues, eigenvectors = np.linalg.eigh(grid_kernel(grid, kind=kind, lengthscale=lengthscale))
    sample = eigenvectors @ (np.sqrt(np.clip(eigenvalues, 0, None)) * rng.standard_normal(grid.n_states))
    return np.maximum(sample + shift, 0.0)


def grid_coverage(
    grid: GridWorld,
    *,
    footprint: int = 2,
    weights="constant",
    seed: int | np.random.Generator = 0,
    kind: str = "matern52",
    lengthscale: float = 2.0,
) -> Coverage:
    """Coverage on ``grid`` with a ``footprint`` x ``footprint`` block per state and weights ``"constant"`` (1),
    ``"bimodal"``, ``"gp"`` (``seed``, ``kind``, ``lengthscale``: :func:`gp_weights`) or an explicit (S,) array.
    Wall cells weigh 0."""
    if isinstance(weights, str):
        if weights not in WEIGHTS:
            raise ValueError(f"weights: expected one of {WEIGHTS} or an array, got {weights!r}")
        if weights == "constant":
            weights = np.ones(grid.n_states)
        elif weights == "bimodal":
            weights = bimodal_weights(grid)
        else:
            weights = gp_weights(grid, seed=seed, kind=kind, lengthscale=lengthscale)
    weights = np.asarray(weights, dtype=float)
    if weights.shape != (grid.n_states,):
        raise ValueError(f"weights: expected shape ({grid.n_states},), got {weights.shape}")
    return Coverage(grid.footprint(footprint), weights * grid.free)


def random_items(
    grid: GridWorld,
    *,
    counts=(18, 14, 13, 16, 18, 14),
    demands=(3, 2, 3, 4, 6, 3),
    seed: int | np.random.Generator = 0,
) -> ItemCollection:
    """Item collection with ``counts[k]`` items of type k on distinct free cells (drawn per type, so one cell can
    hold several types) and demands ``demands[k]``; the paper's 7 x 15 instance uses the defaults (max F = 21)."""
    counts, demands = np.asarray(counts), np.asarray(demands)
    if counts.shape != demands.shape or counts.ndim != 1 or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"counts: expected integers, one per demand, got {counts!r}")
    free = np.flatnonzero(grid.free)
    if np.any(counts < 0) or np.any(counts > free.size):
        raise ValueError(f"counts: expected integers in [0, {free.size}] (the free cells), got {counts!r}")
    rng = np.random.default_rng(seed)
    membership = np.zeros((counts.size, grid.n_states), dtype=bool)
    for k, count in enumerate(counts):
        membership[k, rng.choice(free, size=count, replace=False)] = True
    return ItemCollection(membership, demands)


def grid_experiment_design(
    grid: GridWorld, *, kind: str = "matern52", lengthscale: float = 2.0, variance: float = 1.0, noise: float = 1e-3
) -> ExperimentDesign:
    """D-optimal design with the :func:`grid_kernel` prior on the cells and measurement noise ``noise``."""
    return ExperimentDesign(grid_kernel(grid, kind=kind, lengthscale=lengthscale, variance=variance), noise)
