"""The convex program of two-layer ReLU training, its patterns, objectives, network recovery and certificate.

Papers: Pilanci & Ergen, "Neural Networks are Convex Regularizers" (ICML 2020); Bai, Gautam & Sojoudi,
"Efficient Global Optimization of Two-layer ReLU Networks: Quadratic-time Algorithms and Adversarial
Training" (arXiv 2201.01965). With X (n x d, the bias column appended explicitly) and targets y:

1. Non-convex network: min_{u, alpha} 1/2 ||sum_j (X u_j)_+ alpha_j - y||^2 + beta/2 sum_j (||u_j||^2 + alpha_j^2).
2. Patterns D_i = diag(1[X h_i >= 0]) from gates h_i ~ N(0, I_d) (seeded), deduplicated, the all-zero one dropped.
3. Convex program over the patterns (E_i = 2 D_i - I):
   min_{v, w} 1/2 ||sum_i D_i X (v_i - w_i) - y||^2 + beta sum_i (||v_i||_2 + ||w_i||_2)
   s.t. E_i X v_i >= 0, E_i X w_i >= 0. With every pattern of X it equals step 1's optimum.
4. Recovery: each v_i != 0 gives the neuron u = v_i / sqrt||v_i||, alpha = +sqrt||v_i|| (w_i: alpha = -sqrt||w_i||);
   when v_i is feasible, (X u)_+ alpha = D_i X v_i and beta/2 (||u||^2 + alpha^2) = beta ||v_i||, so the
   network's objective equals the convex one.
5. Dual: max_{lam, mu_i >= 0, xi_i >= 0} -1/2 ||lam||^2 - lam^T y s.t. ||X^T (D_i lam - E_i mu_i)|| <= beta and
   ||X^T (D_i lam + E_i xi_i)|| <= beta. From a primal point take lam = residual, any mu, xi >= 0, and scale
   (lam, mu, xi) by theta = min(1, beta / max norm): a dual-feasible point whose value lower-bounds the optimum.

V and W hold v_i and w_i as the columns of d x P matrices.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.optimize import nnls

LOSSES = ("squared",)


def _finite_matrix(value, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"{name}: expected a non-empty 2-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected finite values")
    return array


@dataclass(frozen=True)
class ConvexReLUProblem:
    """Data with its bias column, targets, weight decay beta and the patterns (n x P bool) with their gates (d x P)."""

    X: np.ndarray
    y: np.ndarray
    beta: float
    patterns: np.ndarray
    gates: np.ndarray
    bias: bool = True
    loss: str = "squared"

    def __post_init__(self) -> None:
        X = _finite_matrix(self.X, "X")
        y = np.asarray(self.y, dtype=float)
        if y.shape != (X.shape[0],) or not np.all(np.isfinite(y)):
            raise ValueError(f"y: expected {X.shape[0]} finite targets, got shape {y.shape}")
        if not (np.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"beta: expected a positive number, got {self.beta!r}")
        patterns = np.asarray(self.patterns, dtype=bool)
        if patterns.ndim != 2 or patterns.shape[0] != X.shape[0] or patterns.shape[1] == 0:
            raise ValueError(f"patterns: expected an ({X.shape[0]}, P) boolean array with P >= 1, got {patterns.shape}")
        gates = np.asarray(self.gates, dtype=float)
        if gates.shape != (X.shape[1], patterns.shape[1]):
            raise ValueError(f"gates: expected shape {(X.shape[1], patterns.shape[1])}, got {gates.shape}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {self.loss!r}")
        for name, value in (("X", X), ("y", y), ("patterns", patterns), ("gates", gates)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "beta", float(self.beta))

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    @property
    def n_patterns(self) -> int:
        return self.patterns.shape[1]

    @property
    def signs(self) -> np.ndarray:
        """E_i = 2 D_i - I as an n x P matrix of +-1."""
        return np.where(self.patterns, 1.0, -1.0)


def with_bias(X) -> np.ndarray:
    """X with a column of ones appended (the bias of each hidden neuron)."""
    X = _finite_matrix(X, "X")
    return np.hstack([X, np.ones((X.shape[0], 1))])


def sample_patterns(X: np.ndarray, n_gates: int, seed: int | np.random.Generator = 0) -> tuple[np.ndarray, np.ndarray]:
    """Patterns 1[X h >= 0] of ``n_gates`` Gaussian gates, deduplicated (first gate kept), all-zero dropped."""
    if not (isinstance(n_gates, int | np.integer) and n_gates >= 1):
        raise ValueError(f"n_gates: expected a positive integer, got {n_gates!r}")
    gates = np.random.default_rng(seed).standard_normal((X.shape[1], int(n_gates)))
    patterns = X @ gates >= 0
    _, first = np.unique(patterns, axis=1, return_index=True)
    keep = np.sort(first)
    keep = keep[patterns[:, keep].any(axis=0)]
    return patterns[:, keep], gates[:, keep]


def complete_planar_patterns(X) -> tuple[np.ndarray, np.ndarray]:
    """Every pattern 1[X h >= 0] of 2-D data with its bias column (n x 3, any 3 rows independent), with a gate each.

    With all patterns the convex program's optimum is the global optimum of the network (step 3); there are
    n^2 - n + 1 non-zero ones (Cover, 1965), so this is for small planar demos.

    Each cell of the central arrangement {x_k^T h = 0} is a pointed cone, so it has an extreme ray on some
    x_k^T h = x_l^T h = 0, i.e. h0 = +-(x_k x x_l); the cells around that ray are h0 + t delta with the four sign
    choices of (x_k^T delta, x_l^T delta) and t small enough to keep every other sign.
    """
    X = _finite_matrix(X, "X")
    if X.shape[1] != 3:
        raise ValueError(f"X: expected planar data with a bias column (n x 3), got shape {X.shape}")
    n = X.shape[0]
    gates = []
    for k, j in combinations(range(n), 2):
        h0 = np.cross(X[k], X[j])
        others = np.delete(np.arange(n), [k, j])
        for side in (1.0, -1.0):
            for signs in ((1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)):
                delta = np.linalg.lstsq(X[[k, j]], np.array(signs), rcond=None)[0]
                t = 0.5 * np.min(np.abs(X[others] @ h0) / np.maximum(np.abs(X[others] @ delta), 1e-300))
                gates.append(side * h0 + t * delta)
    gates = np.array(gates).T
    patterns = X @ gates >= 0
    _, first = np.unique(patterns, axis=1, return_index=True)
    keep = np.sort(first)
    keep = keep[patterns[:, keep].any(axis=0)]
    return patterns[:, keep], gates[:, keep]


def make_problem(X, y, beta: float, n_gates: int, *, seed: int = 0, bias: bool = True) -> ConvexReLUProblem:
    """The convex program of step 3 for raw features X (a bias column is appended when ``bias``)."""
    features = with_bias(X) if bias else _finite_matrix(X, "X")
    patterns, gates = sample_patterns(features, n_gates, seed)
    return ConvexReLUProblem(features, y, beta, patterns, gates, bias=bias)


def _weights(problem: ConvexReLUProblem, V, name: str) -> np.ndarray:
    V = np.asarray(V, dtype=float)
    if V.shape != (problem.d, problem.n_patterns):
        raise ValueError(f"{name}: expected shape {(problem.d, problem.n_patterns)}, got {V.shape}")
    return V


def predict(problem: ConvexReLUProblem, V, W) -> np.ndarray:
    """sum_i D_i X (v_i - w_i)."""
    V, W = _weights(problem, V, "V"), _weights(problem, W, "W")
    return np.sum(problem.patterns * (problem.X @ (V - W)), axis=1)


def convex_objective(problem: ConvexReLUProblem, V, W) -> float:
    residual = predict(problem, V, W) - problem.y
    penalty = np.linalg.norm(V, axis=0).sum() + np.linalg.norm(W, axis=0).sum()
    return float(0.5 * residual @ residual + problem.beta * penalty)


def constraint_violation(problem: ConvexReLUProblem, V, W) -> tuple[float, float]:
    """max_{i,k} [-(E_i X v_i)_k]_+ over V and W, absolute and relative to max(1, ||X||_max sum_i ||v_i||)."""
    V, W = _weights(problem, V, "V"), _weights(problem, W, "W")
    signs = problem.signs
    worst = max(0.0, float(-(signs * (problem.X @ V)).min()), float(-(signs * (problem.X @ W)).min()))
    scale = max(1.0, np.abs(problem.X).max() * (np.linalg.norm(V, axis=0).sum() + np.linalg.norm(W, axis=0).sum()))
    return worst, worst / scale


@dataclass(frozen=True)
class ReLUNetwork:
    """f(x) = sum_j (x^T u_j)_+ alpha_j; ``hidden`` is d x m, ``output`` has m entries, ``pattern`` the source D_i."""

    hidden: np.ndarray
    output: np.ndarray
    pattern: np.ndarray

    @property
    def width(self) -> int:
        return self.output.size

    def __call__(self, X) -> np.ndarray:
        return np.maximum(np.asarray(X, dtype=float) @ self.hidden, 0.0) @ self.output


def recover_network(problem: ConvexReLUProblem, V, W, *, tol: float = 1e-6) -> ReLUNetwork:
    """Step 4: one neuron per v_i or w_i whose norm exceeds ``tol`` times the largest (solver noise is dropped)."""
    V, W = _weights(problem, V, "V"), _weights(problem, W, "W")
    hidden, output, pattern = [], [], []
    largest = max(np.linalg.norm(V, axis=0).max(), np.linalg.norm(W, axis=0).max())
    for sign, matrix in ((1.0, V), (-1.0, W)):
        norms = np.linalg.norm(matrix, axis=0)
        for i in np.flatnonzero(norms > tol * largest):
            scale = np.sqrt(norms[i])
            hidden.append(matrix[:, i] / scale)
            output.append(sign * scale)
            pattern.append(i)
    if not hidden:
        return ReLUNetwork(np.zeros((problem.d, 0)), np.zeros(0), np.zeros(0, dtype=int))
    return ReLUNetwork(np.column_stack(hidden), np.array(output), np.array(pattern))


def network_objective(problem: ConvexReLUProblem, network: ReLUNetwork) -> float:
    """Step 1's objective of a ReLU network on the problem's data."""
    residual = network(problem.X) - problem.y
    decay = np.sum(network.hidden**2) + np.sum(network.output**2)
    return float(0.5 * residual @ residual + 0.5 * problem.beta * decay)


def pattern_mismatches(problem: ConvexReLUProblem, network: ReLUNetwork, *, tol: float = 1e-8) -> int:
    """Rows where a neuron's activation disagrees with its pattern D_i beyond ``tol``.

    Measured on the neuron's contribution x^T u |alpha| (= x^T v_i), relative to the largest one, so solver
    noise in a tiny neuron does not count: D = 1 but x^T v < -tol scale, or D = 0 but x^T v > tol scale.
    """
    contribution = (problem.X @ network.hidden) * np.abs(network.output)
    active = problem.patterns[:, network.pattern]
    scale = tol * max(1.0, np.abs(contribution).max(initial=0.0))
    return int(np.sum(active & (contribution < -scale)) + np.sum(~active & (contribution > scale)))


def best_multipliers(problem: ConvexReLUProblem, V, W) -> tuple[np.ndarray, np.ndarray]:
    """mu_i, xi_i >= 0 minimising ||X^T (D_i lam -+ E_i mu_i)|| for lam = residual (non-negative least squares).

    At an optimal (V, W) the KKT multipliers reach norms <= beta, so the lower bound then equals the optimum.
    Costs 2P small NNLS solves (d x n each).
    """
    residual = predict(problem, V, W) - problem.y
    mu, xi = np.zeros((problem.n, problem.n_patterns)), np.zeros((problem.n, problem.n_patterns))
    for i in range(problem.n_patterns):
        target = problem.X.T @ (problem.patterns[:, i] * residual)
        basis = problem.X.T * problem.signs[:, i]
        mu[:, i] = nnls(basis, target, maxiter=50 * problem.n)[0]
        xi[:, i] = nnls(basis, -target, maxiter=50 * problem.n)[0]
    return mu, xi


def duality_lower_bound(problem: ConvexReLUProblem, V, W, mu=None, xi=None) -> float:
    """Step 5: a lower bound on the optimum from lam = residual and multipliers mu, xi >= 0 (n x P; zero if None)."""
    residual = predict(problem, V, W) - problem.y
    zeros = np.zeros((problem.n, problem.n_patterns))
    mu = zeros if mu is None else np.maximum(np.asarray(mu, dtype=float), 0.0)
    xi = zeros if xi is None else np.maximum(np.asarray(xi, dtype=float), 0.0)
    masked = problem.patterns * residual[:, None]
    signs = problem.signs
    norms = np.concatenate(
        [
            np.linalg.norm(problem.X.T @ (masked - signs * mu), axis=0),
            np.linalg.norm(problem.X.T @ (masked + signs * xi), axis=0),
        ]
    )
    theta = min(1.0, problem.beta / norms.max()) if norms.max() > 0 else 1.0
    return float(-0.5 * theta**2 * residual @ residual - theta * residual @ problem.y)


@dataclass(frozen=True)
class ConvexCertificate:
    """Objective, constraint violation, dual lower bound and gap, and what the recovered network achieves."""

    objective: float
    violation: float
    relative_violation: float
    lower_bound: float
    gap: float
    relative_gap: float
    network_objective: float
    width: int
    pattern_mismatches: int


def certify(problem: ConvexReLUProblem, V, W, mu=None, xi=None, *, tol: float = 1e-6) -> ConvexCertificate:
    """Everything a solution should be checked with; the gap is a valid bound only when the violation is ~0.

    Without multipliers, :func:`best_multipliers` computes them (2P NNLS solves).
    """
    objective = convex_objective(problem, V, W)
    violation, relative = constraint_violation(problem, V, W)
    if mu is None and xi is None:
        mu, xi = best_multipliers(problem, V, W)
    lower = duality_lower_bound(problem, V, W, mu, xi)
    network = recover_network(problem, V, W, tol=tol)
    return ConvexCertificate(
        objective=objective,
        violation=violation,
        relative_violation=relative,
        lower_bound=lower,
        gap=objective - lower,
        relative_gap=(objective - lower) / max(abs(objective), 1e-300),
        network_objective=network_objective(problem, network),
        width=network.width,
        pattern_mismatches=pattern_mismatches(problem, network),
    )
