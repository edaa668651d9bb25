"""Variance-reduced Halpern iteration for finite-sum monotone inclusions, with deterministic baselines.

Paper: X. Cai, A. Alacaoglu, J. Diakonikolas, "Variance Reduced Halpern Iteration for Finite-Sum Monotone
Inclusions" (arXiv 2310.02987, ICLR 2024); parameters as in the authors' experiment scripts
(``zephyr-cai/Finite-Sum-Halpern-Iteration``: ``matrix_game.py``, ``quadratic_programming.py``).

Problem. Find u with 0 in F(u) + N_C(u), where F = (1/N) sum_i F_i is monotone and N_C is the normal cone of a
closed convex set C, whose resolvent is the Euclidean projection P onto C. Accuracy is the natural-map residual
||u - P(u - F(u))||_2, zero exactly at solutions and computable. Oracle: one component F_i at one point costs one
call and a full F costs N; ``epochs`` = calls / N. The residual and gap recorded after every step for monitoring
are not charged; a residual an algorithm uses (for a restart) is computed from an F it pays for anyway.

Problems.

* :class:`FiniteSumMatrixGame`: min over x in the simplex D_m, max over y in D_n, of x^T A y with
  A = (1/N) sum_i A_i; F(u) = (A y, -A^T x), F_i(u) = (A_i y, -A_i^T x), C = D_m x D_n (exact sort-based
  projection, :func:`project_simplex`); duality gap max_j (A^T x)_j - min_i (A y)_i.
  :func:`annotator_matrix_game`: A_i = 1/2 - P_i for Bradley-Terry annotators P_i[a, b] = sigma(r_a - r_b).
* :class:`FiniteSumAffineProblem`: F_i(u) = M_i u + q_i on a box. :func:`bilinear_quadratic_problem` (the
  paper's hard QP min-max, rows split into components) and :func:`least_squares_problem` (cocoercive).

Algorithms (P the projection onto C, u_0 the anchor).

1. :class:`ProjectedExtragradient` (Korpelevich 1976): u' = P(u_k - eta F(u_k)), u_{k+1} = P(u_k - eta F(u')).
   2N calls per iteration.
2. :class:`Halpern`: the extra-anchored gradient method (EAG, Yoon & Ryu 2021), projected as in the paper's
   scripts: with lambda_k = 1/(k+2) and a_k = lambda_k u_0 + (1 - lambda_k) u_k,
   u' = P(a_k - eta F(u_k)), u_{k+1} = P(a_k - eta F(u')). 2N calls per iteration; residual O(1/k).
3. :class:`PageHalpern`, the paper's Alg. 1, for F cocoercive on average (NOT guaranteed for bilinear games):
   lambda_k = 2/(k+4), u_{k+1} = P(lambda_k u_0 + (1 - lambda_k) u_k - eta G_k) with the PAGE estimator
   G_k = F(u_k) with probability p_k (p_k = 1 for k <= 1, 4/(k+4) while k - 1 <= sqrt(N), then 4/(sqrt(N)+5)),
   else G_k = G_{k-1} + (1/b) sum_{i in B_k} [F_i(u_k) - F_i(u_{k-1})], B_k drawn without replacement,
   b = floor(sqrt(N)). (The scripts write (N/b) sum for F = sum_i F_i; for the average F it is 1/b, unbiased.)
   Cost: N for a full pass, 2b for a mini-batch step.
4. :class:`VRHalpern`, the paper's Alg. 2, for monotone Lipschitz F (the method that is correct for bilinear
   games): inexact Halpern on the resolvent J = (I + c(F + N_C))^{-1},
   u_{k+1} = lambda_k u_0 + (1 - lambda_k) J~(u_k), lambda_k = 1/(k+2), c = sqrt(N)/L with L the mean-square
   Lipschitz constant (E_i ||F_i(u) - F_i(v)||^2 <= L^2 ||u - v||^2). J~(u) runs M_k = ceil(0.05 N log(k+2))
   iterations of VR-FoRB (Alacaoglu & Malitsky 2022) on the 1-strongly monotone B(v) = v - u + c F(v),
   B_i(v) = v - u + c F_i(v), from v_0 = w_0 = w_{-1} = u:
       vbar_t = alpha v_t + (1 - alpha) w_t
       v_{t+1} = P(vbar_t - gamma [B(w_t) + B_i(v_t) - B_i(w_{t-1})]),   i uniform
       w_{t+1} = v_{t+1} with probability p, else w_t
   with p = 1/N (1/2 when N = 1), alpha = 1 - p, gamma = min(5 sqrt(p (1 - p)), 1/2) / (1 + c L) (the script's
   5, capped where it would break FoRB's stability gamma L_B < 1/2 for small N). Cost per inner loop:
   N for B(u), 2 per inner iteration, N per snapshot. (The public script resets the snapshot to the outer point u
   instead of v_{t+1}; here it is v_{t+1}, as VR-FoRB defines it.)

Restarts (optional, ``restart=beta``): the Halpern methods are O(1/k) in the residual, so 1e-6 costs ~1e6
iterations. Matrix games are sharp, and restarting the anchor (u_0 <- u_k, k <- 0) each time the residual at u_k
has fallen below beta times its value at the last anchor makes them linear in practice (as in restarted Halpern
PDHG, Lu & Yang 2024; scheduled restarts under sharpness: Cai, Song, Guzman & Diakonikolas 2022). The residual is
checked only where the method computes the full F(u_k) anyway (every iteration for EAG, every outer step for
Alg. 2, full passes of Alg. 1). Default off: the paper's methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from theory.games.preference import annotator_population
from theory.solver import Callback, IterationState, SolverResult, iterate

# --------------------------------------------------------------------------------------------- validation


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not (np.isscalar(value) and np.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    return float(value)


def _non_negative(value, name: str) -> float:
    if isinstance(value, bool) or not (np.isscalar(value) and np.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: expected a non-negative number, got {value!r}")
    return float(value)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _restart_factor(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not (np.isscalar(value) and 0 < value < 1):
        raise ValueError(f"restart: expected None or a factor in (0, 1), got {value!r}")
    return float(value)


def _finite_array(value, name: str, ndim: int) -> np.ndarray:
    array = np.array(value, dtype=float)
    if array.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected finite values (no NaN or inf)")
    return array


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed: expected an int or a numpy Generator, got {type(seed).__name__}")
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------------------------- projections


@numba.njit(cache=True)
def _project_rows(rows: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    out = np.empty_like(rows)
    for r in range(rows.shape[0]):
        s = np.sort(rows[r])[::-1]
        total, theta = 0.0, 0.0
        for j in range(s.size):
            total += s[j]
            candidate = (total - 1.0) / (j + 1)
            if s[j] > candidate:  # holds on a prefix j = 0..rho; theta is its last candidate
                theta = candidate
        for j in range(s.size):
            out[r, j] = max(rows[r, j] - theta, 0.0)
    return out


def project_simplex(v, axis: int = -1) -> np.ndarray:
    """Euclidean projection of ``v`` onto the probability simplex along ``axis`` (vectorised over the others).

    Sort-based (Held, Wolfe & Crowder 1974; Duchi et al. 2008): with s the entries sorted in decreasing order,
    rho = max{j : s_j > (s_1 + ... + s_j - 1)/j} and theta = (s_1 + ... + s_rho - 1)/rho, the projection is
    max(v - theta, 0). Exact up to rounding in the sum; O(d log d) per vector (a numba kernel over the rows).
    """
    v = np.asarray(v, dtype=float)
    if v.ndim == 0 or v.shape[axis] < 1:
        raise ValueError(f"v: expected at least one entry along axis {axis}, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("v: expected finite values (no NaN or inf)")
    moved = np.moveaxis(v, axis, -1)
    rows = np.ascontiguousarray(moved).reshape(-1, moved.shape[-1])
    return np.moveaxis(_project_rows(rows).reshape(moved.shape), -1, axis)


def _spectral_norms(matrices: np.ndarray) -> np.ndarray:
    return np.linalg.norm(matrices, ord=2, axis=(-2, -1))


def _component_indices(indices, n_components: int) -> np.ndarray | int:
    """An int or a 1-D integer array of component indices in [0, N); repeats allowed."""
    array = np.asarray(indices)
    if not np.issubdtype(array.dtype, np.integer) or array.ndim > 1 or array.size == 0:
        raise ValueError(f"indices: expected an int or a non-empty 1-D integer array, got {indices!r}")
    if np.any(array < 0) or np.any(array >= n_components):
        raise ValueError(f"indices: expected indices in [0, {n_components}), got {indices!r}")
    return int(array) if array.ndim == 0 else array


def _mean_over(stack: np.ndarray, indices) -> np.ndarray:
    return stack[indices] if isinstance(indices, int) else stack[indices].mean(axis=0)


# --------------------------------------------------------------------------------------------- problems


class _FiniteSumProblem:
    """Shared interface of the problems; the solvers call the unchecked ``_`` methods on valid points.

    Subclasses set ``n_components``, ``dim``, ``lipschitz`` (of F) and ``mean_square_lipschitz`` (L, with
    E_i ||F_i(u) - F_i(v)||^2 <= L^2 ||u - v||^2, i uniform) and define ``_operator(u)``,
    ``_component_operator(u, indices)`` (the mean of F_i(u) over I), ``_component_linear(d, indices)`` (the mean
    of F_i(u) - F_i(v) over I, with d = u - v: every F_i here is affine) and ``_project(u)``.
    """

    n_components: int
    dim: int
    lipschitz: float
    mean_square_lipschitz: float

    def point(self, u, name: str = "u") -> np.ndarray:
        u = np.asarray(u, dtype=float)
        if u.shape != (self.dim,) or not np.all(np.isfinite(u)):
            raise ValueError(f"{name}: expected a finite vector of shape ({self.dim},), got shape {u.shape}")
        return u

    def operator(self, u) -> np.ndarray:
        """F(u) = (1/N) sum_i F_i(u)."""
        return self._operator(self.point(u))

    def component_operator(self, u, indices) -> np.ndarray:
        """(1/|I|) sum_{i in I} F_i(u) for an index or an index array I (repeats allowed)."""
        return self._component_operator(self.point(u), _component_indices(indices, self.n_components))

    def component_difference(self, u, v, indices) -> np.ndarray:
        """(1/|I|) sum_{i in I} [F_i(u) - F_i(v)] (one product, F_i being affine; the solvers charge 2|I| calls)."""
        return self._component_linear(
            self.point(u) - self.point(v, "v"), _component_indices(indices, self.n_components)
        )

    def project(self, u) -> np.ndarray:
        """The Euclidean projection onto C (the resolvent of its normal cone)."""
        return self._project(self.point(u))

    def natural_residual(self, u) -> float:
        """||u - P(u - F(u))||_2: zero exactly at solutions of the VI."""
        u = self.point(u)
        return self._natural_residual(u, self._operator(u))

    def _natural_residual(self, u: np.ndarray, field: np.ndarray) -> float:
        return float(np.linalg.norm(u - self._project(u - field)))

    def metrics(self, u) -> dict[str, float]:
        """What the solvers record after each step: ``residual`` (and ``gap`` for games)."""
        return {"residual": self.natural_residual(u)}


class FiniteSumMatrixGame(_FiniteSumProblem):
    """min_{x in D_m} max_{y in D_n} x^T A y with A = (1/N) sum_i A_i, ``components`` of shape (N, m, n).

    u = (x, y); F(u) = (A y, -A^T x), F_i(u) = (A_i y, -A_i^T x); C = D_m x D_n. The Lipschitz constant of F
    is ||A||_2 and the mean-square one sqrt(mean_i ||A_i||_2^2).
    """

    def __init__(self, components) -> None:
        components = _finite_array(components, "components", 3)
        n_components, m, n = components.shape
        if n_components < 1 or m < 1 or n < 1:
            raise ValueError(f"components: expected shape (N, m, n) with N, m, n >= 1, got {components.shape}")
        components.setflags(write=False)
        self.components = components
        self.matrix = components.mean(axis=0)
        self.matrix.setflags(write=False)
        self.n_components, self.shape, self.dim = n_components, (m, n), m + n
        self.lipschitz = float(_spectral_norms(self.matrix))
        self.mean_square_lipschitz = float(np.sqrt(np.mean(_spectral_norms(components) ** 2)))

    def split(self, u) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) from u = (x, y)."""
        u = self.point(u)
        return u[: self.shape[0]], u[self.shape[0] :]

    def _field(self, matrix: np.ndarray, u: np.ndarray) -> np.ndarray:
        m = self.shape[0]
        return np.concatenate([matrix @ u[m:], -(u[:m] @ matrix)])

    def _operator(self, u):
        return self._field(self.matrix, u)

    def _component_operator(self, u, indices):
        return self._field(_mean_over(self.components, indices), u)

    def _component_linear(self, d, indices):
        return self._field(_mean_over(self.components, indices), d)

    def _project(self, u):
        m = self.shape[0]
        return np.concatenate([_project_rows(u[None, :m])[0], _project_rows(u[None, m:])[0]])

    def initial_point(self) -> np.ndarray:
        """Both players uniform."""
        m, n = self.shape
        return np.concatenate([np.full(m, 1.0 / m), np.full(n, 1.0 / n)])

    def value(self, u) -> float:
        """x^T A y."""
        x, y = self.split(u)
        return float(x @ self.matrix @ y)

    def duality_gap(self, u) -> float:
        """max_{y'} x^T A y' - min_{x'} x'^T A y = max_j (A^T x)_j - min_i (A y)_i (exact on simplices)."""
        x, y = self.split(u)
        return float(np.max(x @ self.matrix) - np.min(self.matrix @ y))

    def metrics(self, u) -> dict[str, float]:
        return {"residual": self.natural_residual(u), "gap": self.duality_gap(u)}


class FiniteSumAffineProblem(_FiniteSumProblem):
    """F_i(u) = M_i u + q_i (``matrices`` (N, d, d), ``offsets`` (N, d)) on the box lower <= u <= upper.

    ``lower``/``upper``: scalars or (d,) arrays, -inf/+inf (the default) for no bound; P is clipping.
    The Lipschitz constant of F is ||mean M_i||_2 and the mean-square one sqrt(mean_i ||M_i||_2^2).
    """

    def __init__(self, matrices, offsets, *, lower=-np.inf, upper=np.inf) -> None:
        matrices = _finite_array(matrices, "matrices", 3)
        n_components, d, d2 = matrices.shape
        if n_components < 1 or d < 1 or d != d2:
            raise ValueError(f"matrices: expected shape (N, d, d) with N, d >= 1, got {matrices.shape}")
        offsets = _finite_array(offsets, "offsets", 2)
        if offsets.shape != (n_components, d):
            raise ValueError(f"offsets: expected shape ({n_components}, {d}), got {offsets.shape}")
        lower = np.broadcast_to(np.asarray(lower, dtype=float), (d,)).copy()
        upper = np.broadcast_to(np.asarray(upper, dtype=float), (d,)).copy()
        if np.any(np.isnan(lower)) or np.any(np.isnan(upper)) or np.any(lower > upper):
            raise ValueError("lower, upper: expected bounds with lower <= upper (no NaN)")
        self.matrices, self.offsets, self.lower, self.upper = matrices, offsets, lower, upper
        self.matrix, self.offset = matrices.mean(axis=0), offsets.mean(axis=0)
        for array in (matrices, offsets, lower, upper, self.matrix, self.offset):
            array.setflags(write=False)
        self.n_components, self.dim = n_components, d
        self.lipschitz = float(_spectral_norms(self.matrix))
        self.mean_square_lipschitz = float(np.sqrt(np.mean(_spectral_norms(matrices) ** 2)))

    def _operator(self, u):
        return self.matrix @ u + self.offset

    def _component_operator(self, u, indices):
        return _mean_over(self.matrices, indices) @ u + _mean_over(self.offsets, indices)

    def _component_linear(self, d, indices):
        return _mean_over(self.matrices, indices) @ d

    def _project(self, u):
        return np.clip(u, self.lower, self.upper)

    def initial_point(self) -> np.ndarray:
        """The origin, clipped into the box."""
        return self._project(np.zeros(self.dim))


# --------------------------------------------------------------------------------------------- instances


def annotator_matrix_game(
    n_actions: int, n_annotators: int, seed: int | np.random.Generator = 0, *, reward_scale: float = 1.0
) -> FiniteSumMatrixGame:
    """The unregularised preference game of a population of Bradley-Terry annotators, one component each.

    Annotator i has rewards r^(i) ~ N(0, reward_scale^2 I) over the actions and prefers a to b with probability
    P_i[a, b] = sigma(r^(i)_a - r^(i)_b); each P_i is transitive, their mean generally is not. Components
    A_i = 1/2 - P_i (antisymmetric), so x^T A y = 1/2 - P(x beats y): the minimiser x maximises its win
    probability against y, y likewise, the value is 0 and x* (= y* up to the choice among equilibria) is a
    von Neumann winner of the mean preference.
    """
    return FiniteSumMatrixGame(0.5 - annotator_population(n_actions, n_annotators, scale=reward_scale, seed=seed))


def bilinear_quadratic_problem(
    n: int = 200, n_components: int = 10, *, bound: float | None = None
) -> FiniteSumAffineProblem:
    """The paper's QP min-max, min_x max_y 1/2 x^T H x - h^T x - <A x - b, y>, split by rows of A.

    Classic hard instance (the paper's scripts, after Ouyang & Xu 2021): A[i, n-1-i] = 1/4, A[i, n-2-i] = -1/4,
    H = 2 A^T A, b = 1/4 1, h = 1/4 e_n. F(x, y) = (H x - h - A^T y, A x - b). The rows of A are split into
    ``n_components`` contiguous blocks A_i (rows R_i, embedding E_i) and, with H = 2 sum_i A_i^T A_i,
        F_i(x, y) = (N (2 A_i^T A_i x - A_i^T y_{R_i}) - h,  N E_i (A_i x - b_{R_i})),
    so F = (1/N) sum_i F_i exactly. ``bound`` = None: unconstrained (the unique solution solves F = 0);
    otherwise the box |u_j| <= bound. Dense storage: N (2n)^2 numbers.
    """
    n = _positive_int(n, "n")
    n_components = _positive_int(n_components, "n_components")
    if n < 2 or n_components > n:
        raise ValueError(f"n_components: expected 1 <= n_components <= n with n >= 2, got {n_components} (n = {n})")
    coupling = np.zeros((n, n))
    rows = np.arange(n)
    coupling[rows, n - 1 - rows] = 0.25
    coupling[rows[:-1], n - 2 - rows[:-1]] = -0.25
    b = np.full(n, 0.25)
    h = np.zeros(n)
    h[-1] = 0.25
    matrices = np.zeros((n_components, 2 * n, 2 * n))
    offsets = np.zeros((n_components, 2 * n))
    for i, block in enumerate(np.array_split(rows, n_components)):
        a_i = coupling[block]
        matrices[i, :n, :n] = 2 * n_components * a_i.T @ a_i
        matrices[i, :n][:, n + block] = -n_components * a_i.T
        matrices[i, n + block, :n] = n_components * a_i
        offsets[i, :n] = -h
        offsets[i, n + block] = -n_components * b[block]
    if bound is None:
        return FiniteSumAffineProblem(matrices, offsets)
    bound = _positive(bound, "bound")
    return FiniteSumAffineProblem(matrices, offsets, lower=-bound, upper=bound)


def least_squares_problem(
    n_components: int, dim: int, seed: int | np.random.Generator = 0, *, rows: int = 5, bound: float = 1.0
) -> FiniteSumAffineProblem:
    """Box-constrained least squares min_{|u_j| <= bound} (1/N) sum_i 1/2 ||B_i u - c_i||^2: a cocoercive instance.

    B_i (rows x dim) has N(0, 1/rows) entries and c_i ~ N(0, I). F_i(u) = B_i^T (B_i u - c_i) is the gradient of
    a convex ||B_i^T B_i||-smooth function, hence cocoercive (Baillon-Haddad), and so is F: Alg. 1's setting.
    """
    n_components = _positive_int(n_components, "n_components")
    dim, rows = _positive_int(dim, "dim"), _positive_int(rows, "rows")
    bound = _positive(bound, "bound")
    rng = _rng(seed)
    design = rng.standard_normal((n_components, rows, dim)) / np.sqrt(rows)
    targets = rng.standard_normal((n_components, rows))
    matrices = np.einsum("nri,nrj->nij", design, design)
    offsets = -np.einsum("nri,nr->ni", design, targets)
    return FiniteSumAffineProblem(matrices, offsets, lower=-bound, upper=bound)


# --------------------------------------------------------------------------------------------- solvers


def _checked_problem(problem) -> FiniteSumMatrixGame | FiniteSumAffineProblem:
    if not isinstance(problem, FiniteSumMatrixGame | FiniteSumAffineProblem):
        raise TypeError(
            f"problem: expected a FiniteSumMatrixGame or FiniteSumAffineProblem, got {type(problem).__name__}"
        )
    return problem


class _Anchor:
    """Halpern anchor u_0 and counter k, with the optional adaptive restart of the module docstring."""

    def __init__(self, u0: np.ndarray, restart: float | None) -> None:
        self.point, self.k, self.factor = u0.copy(), 0, restart
        self.reference: float | None = None
        self.restarts = 0

    def observe(self, u: np.ndarray, residual: float) -> None:
        """Record the exact residual at the current iterate u = u_k; restart there when it has fallen enough."""
        if self.factor is None:
            return
        if self.reference is None:
            self.reference = residual
        elif residual <= self.factor * self.reference:
            self.point, self.k, self.reference = u.copy(), 0, residual
            self.restarts += 1


class _FiniteSumSolver:
    """State shared by the methods: the problem, the iterate ``u``, the oracle counter and the stopping test.

    ``step()`` performs one iteration (:meth:`_advance`) and returns the monitored metrics at the new iterate
    (``residual``, ``gap`` for games) with ``oracle_calls`` and ``epochs``; ``converged``: residual <= tol.
    """

    def __init__(self, problem, u0, tol: float) -> None:
        self.problem = _checked_problem(problem)
        start = problem.initial_point() if u0 is None else problem.point(u0, "u0")
        self.u = problem._project(start)
        self.tol = _non_negative(tol, "tol")
        self.oracle_calls = 0
        self.metrics = problem.metrics(self.u)

    @property
    def epochs(self) -> float:
        return self.oracle_calls / self.problem.n_components

    @property
    def residual(self) -> float:
        return self.metrics["residual"]

    @property
    def converged(self) -> bool:
        return self.residual <= self.tol

    def _full_operator(self, u: np.ndarray) -> np.ndarray:
        self.oracle_calls += self.problem.n_components
        return self.problem._operator(u)

    def _component_difference(self, u: np.ndarray, v: np.ndarray, indices) -> np.ndarray:
        self.oracle_calls += 2 * np.size(indices)
        return self.problem._component_linear(u - v, indices)

    def _advance(self) -> None:
        raise NotImplementedError

    def step(self) -> dict[str, float]:
        self._advance()
        self.metrics = self.problem.metrics(self.u)
        return {**self.metrics, "oracle_calls": float(self.oracle_calls), "epochs": self.epochs}


class ProjectedExtragradient(_FiniteSumSolver):
    """Projected extragradient (Korpelevich 1976): u' = P(u - eta F(u)), u+ = P(u - eta F(u')); 2N calls.

    ``step`` eta defaults to 0.9 / L_F (L_F = ||A||_2 for games). Convergence needs eta < 1/L_F: at eta = 1/L_F
    the top singular mode of a bilinear F is a pure rotation (|1 - i eta s - eta^2 s^2| = 1), and EG cycles on
    rock-paper-scissors.
    """

    def __init__(self, problem, u0=None, *, step: float | None = None, tol: float = 1e-6) -> None:
        super().__init__(problem, u0, tol)
        self.step_size = 0.9 / self.problem.lipschitz if step is None else _positive(step, "step")

    def _advance(self) -> None:
        project, eta = self.problem._project, self.step_size
        middle = project(self.u - eta * self._full_operator(self.u))
        self.u = project(self.u - eta * self._full_operator(middle))


class Halpern(_FiniteSumSolver):
    """Projected extra-anchored gradient (EAG, Yoon & Ryu 2021), the deterministic Halpern baseline.

    a_k = lambda_k u_0 + (1 - lambda_k) u_k, lambda_k = 1/(k+2); u' = P(a_k - eta F(u_k)),
    u_{k+1} = P(a_k - eta F(u')). 2N calls per iteration, residual O(1/k). ``step`` eta defaults to 1/(2 L_F)
    (Yoon & Ryu prove EAG-C for eta <= 1/(8 L); the paper's scripts use 5/L_F on matrix games).
    """

    def __init__(
        self, problem, u0=None, *, step: float | None = None, restart: float | None = None, tol: float = 1e-6
    ) -> None:
        super().__init__(problem, u0, tol)
        self.step_size = 0.5 / self.problem.lipschitz if step is None else _positive(step, "step")
        self.anchor = _Anchor(self.u, _restart_factor(restart))

    def _advance(self) -> None:
        project, eta, anchor = self.problem._project, self.step_size, self.anchor
        field = self._full_operator(self.u)
        anchor.observe(self.u, self.problem._natural_residual(self.u, field))
        weight = 1.0 / (anchor.k + 2)
        anchored = weight * anchor.point + (1 - weight) * self.u
        middle = project(anchored - eta * field)
        self.u = project(anchored - eta * self._full_operator(middle))
        anchor.k += 1


class PageHalpern(_FiniteSumSolver):
    """The paper's Alg. 1: single-loop Halpern with the PAGE estimator, for F cocoercive on average.

    lambda_k = 2/(k+4); u_{k+1} = P(lambda_k u_0 + (1 - lambda_k) u_k - eta G_k), with G_k = F(u_k) with
    probability p_k (1 for k <= 1, 4/(k+4) while k - 1 <= sqrt(N), then 4/(sqrt(N)+5)), otherwise
    G_k = G_{k-1} + (1/b) sum_{i in B_k} [F_i(u_k) - F_i(u_{k-1})], |B_k| = b = floor(sqrt(N)) without
    replacement. ``step`` eta defaults to 1/L (mean-square Lipschitz). On a monotone but not cocoercive F (a
    bilinear game) there is no guarantee: use :class:`VRHalpern` there.
    """

    def __init__(
        self,
        problem,
        u0=None,
        *,
        step: float | None = None,
        batch_size: int | None = None,
        restart: float | None = None,
        tol: float = 1e-6,
        seed: int | np.random.Generator = 0,
    ) -> None:
        super().__init__(problem, u0, tol)
        n = self.problem.n_components
        self.step_size = 1.0 / self.problem.mean_square_lipschitz if step is None else _positive(step, "step")
        self.batch_size = math.isqrt(n) if batch_size is None else _positive_int(batch_size, "batch_size")
        if self.batch_size > n:
            raise ValueError(f"batch_size: expected at most N = {n}, got {self.batch_size}")
        self.anchor = _Anchor(self.u, _restart_factor(restart))
        self.rng = _rng(seed)
        self.estimate = np.zeros(self.problem.dim)
        self.previous = self.u.copy()

    def full_pass_probability(self, k: int) -> float:
        """p_k of Alg. 1."""
        root = math.sqrt(self.problem.n_components)
        if k <= 1:
            return 1.0
        return 4.0 / (k + 4) if k - 1 <= root else 4.0 / (root + 5)

    def _advance(self) -> None:
        anchor, n = self.anchor, self.problem.n_components
        if self.rng.random() < self.full_pass_probability(anchor.k):
            self.estimate = self._full_operator(self.u)
            anchor.observe(self.u, self.problem._natural_residual(self.u, self.estimate))
        else:
            batch = self.rng.choice(n, self.batch_size, replace=False)
            self.estimate = self.estimate + self._component_difference(self.u, self.previous, batch)
        weight = 2.0 / (anchor.k + 4)
        self.previous = self.u
        self.u = self.problem._project(weight * anchor.point + (1 - weight) * self.u - self.step_size * self.estimate)
        anchor.k += 1


class VRHalpern(_FiniteSumSolver):
    """The paper's Alg. 2: inexact Halpern on the resolvent with a VR-FoRB inner loop (monotone Lipschitz F).

    One ``step`` is one outer iteration u_{k+1} = lambda_k u_0 + (1 - lambda_k) J~(u_k), lambda_k = 1/(k+2),
    J~ approximating (I + c(F + N_C))^{-1} by M_k = ceil(inner_factor N log(k+2)) VR-FoRB iterations (module
    docstring, step 4). Defaults as in the paper's matrix-game script: c = sqrt(N)/L (``resolvent_scale``),
    p = 1/N (``snapshot_probability``; 1/2 when N = 1), alpha = 1 - p,
    gamma = min(step_scale sqrt(p(1-p)), 1/2)/(1 + cL) with ``step_scale`` = 5, ``inner_factor`` = 0.05.
    This is the method that converges on bilinear games.
    """

    def __init__(
        self,
        problem,
        u0=None,
        *,
        resolvent_scale: float | None = None,
        snapshot_probability: float | None = None,
        step_scale: float = 5.0,
        inner_factor: float = 0.05,
        restart: float | None = None,
        tol: float = 1e-6,
        seed: int | np.random.Generator = 0,
    ) -> None:
        super().__init__(problem, u0, tol)
        n, lipschitz = self.problem.n_components, self.problem.mean_square_lipschitz
        self.c = math.sqrt(n) / lipschitz if resolvent_scale is None else _positive(resolvent_scale, "resolvent_scale")
        p = min(1.0 / n, 0.5) if snapshot_probability is None else float(snapshot_probability)
        if not 0 < p < 1:
            raise ValueError(f"snapshot_probability: expected a probability in (0, 1), got {snapshot_probability!r}")
        self.p, self.alpha = p, 1.0 - p
        # FoRB is stable only for gamma L_B < 1/2 (L_B = 1 + cL): the script's scale 5 (tuned at N = 500) is capped.
        scale = min(_positive(step_scale, "step_scale") * math.sqrt(p * (1 - p)), 0.5)
        self.gamma = scale / (1 + self.c * lipschitz)
        self.inner_factor = _positive(inner_factor, "inner_factor")
        self.anchor = _Anchor(self.u, _restart_factor(restart))
        self.rng = _rng(seed)

    def inner_iterations(self, k: int) -> int:
        """M_k = ceil(inner_factor N log(k+2))."""
        return math.ceil(self.inner_factor * self.problem.n_components * math.log(k + 2))

    def resolvent(self, u: np.ndarray, field: np.ndarray, n_iter: int) -> np.ndarray:
        """VR-FoRB for 0 in v - u + c(F + N_C)(v), from v = u where F(u) = ``field`` (already paid for)."""
        problem, c, gamma, alpha = self.problem, self.c, self.gamma, self.alpha
        v, snapshot, previous_snapshot = u, u, u
        snapshot_field = c * field  # B(w_0) = w_0 - u + c F(w_0) with w_0 = u
        indices = self.rng.integers(problem.n_components, size=n_iter)
        refresh = self.rng.random(n_iter) < self.p
        for index, refreshed in zip(indices, refresh, strict=True):
            reflected = c * self._component_difference(v, previous_snapshot, int(index)) + (v - previous_snapshot)
            v = problem._project(alpha * v + (1 - alpha) * snapshot - gamma * (snapshot_field + reflected))
            previous_snapshot = snapshot
            if refreshed:
                snapshot = v
                snapshot_field = snapshot - u + c * self._full_operator(snapshot)
        return v

    def _advance(self) -> None:
        anchor = self.anchor
        field = self._full_operator(self.u)
        anchor.observe(self.u, self.problem._natural_residual(self.u, field))
        resolvent = self.resolvent(self.u, field, self.inner_iterations(anchor.k))
        weight = 1.0 / (anchor.k + 2)
        self.u = weight * anchor.point + (1 - weight) * resolvent
        anchor.k += 1


# --------------------------------------------------------------------------------------------- solve functions


@dataclass(frozen=True, kw_only=True)
class FiniteSumResult(SolverResult):
    """A run: the final point ``u`` (for games ``problem.split(u)`` gives (x, y)), its natural ``residual`` and
    duality ``gap`` (NaN for non-games), the oracle ``calls`` and ``epochs`` (calls / N), the ``method`` and its
    number of anchor ``restarts``. ``history``: residual (and gap), oracle_calls, epochs, seconds per iteration.
    """

    u: np.ndarray
    residual: float
    gap: float
    oracle_calls: int
    epochs: float
    method: str
    restarts: int


def _run(
    solver: _FiniteSumSolver,
    method: str,
    *,
    max_iter: int,
    max_epochs: float | None,
    callback: Callback | None,
    progress: bool,
) -> FiniteSumResult:
    budget = None if max_epochs is None else _positive(max_epochs, "max_epochs")

    def stop(state: IterationState) -> bool:
        asked = bool(callback(state)) if callback is not None else False
        return asked or (budget is not None and solver.epochs >= budget)

    outcome = iterate(solver, max_iter=max_iter, callback=stop, progress=progress)
    fields = outcome.fields()
    if not outcome.converged and budget is not None and solver.epochs >= budget:
        fields["message"] = f"epoch budget {budget:g} spent after {outcome.n_iter} iterations"
    anchor = getattr(solver, "anchor", None)
    return FiniteSumResult(
        u=solver.u.copy(),
        residual=solver.residual,
        gap=solver.metrics.get("gap", math.nan),
        oracle_calls=solver.oracle_calls,
        epochs=solver.epochs,
        method=method,
        restarts=0 if anchor is None else anchor.restarts,
        **fields,
    )


def solve_extragradient(
    problem,
    u0=None,
    *,
    step: float | None = None,
    tol: float = 1e-6,
    max_iter: int = 100_000,
    max_epochs: float | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> FiniteSumResult:
    """Projected extragradient (:class:`ProjectedExtragradient`) until residual <= tol, max_iter or max_epochs."""
    solver = ProjectedExtragradient(problem, u0, step=step, tol=tol)
    return _run(solver, "extragradient", max_iter=max_iter, max_epochs=max_epochs, callback=callback, progress=progress)


def solve_halpern(
    problem,
    u0=None,
    *,
    step: float | None = None,
    restart: float | None = None,
    tol: float = 1e-6,
    max_iter: int = 100_000,
    max_epochs: float | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> FiniteSumResult:
    """Deterministic Halpern / EAG (:class:`Halpern`) until residual <= tol, max_iter or max_epochs."""
    solver = Halpern(problem, u0, step=step, restart=restart, tol=tol)
    return _run(solver, "halpern", max_iter=max_iter, max_epochs=max_epochs, callback=callback, progress=progress)


def solve_page_halpern(
    problem,
    u0=None,
    *,
    step: float | None = None,
    batch_size: int | None = None,
    restart: float | None = None,
    tol: float = 1e-6,
    seed: int | np.random.Generator = 0,
    max_iter: int = 1_000_000,
    max_epochs: float | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> FiniteSumResult:
    """The paper's Alg. 1 (:class:`PageHalpern`, cocoercive F) until residual <= tol, max_iter or max_epochs."""
    solver = PageHalpern(problem, u0, step=step, batch_size=batch_size, restart=restart, tol=tol, seed=seed)
    return _run(solver, "page_halpern", max_iter=max_iter, max_epochs=max_epochs, callback=callback, progress=progress)


def solve_vr_halpern(
    problem,
    u0=None,
    *,
    resolvent_scale: float | None = None,
    snapshot_probability: float | None = None,
    step_scale: float = 5.0,
    inner_factor: float = 0.05,
    restart: float | None = None,
    tol: float = 1e-6,
    seed: int | np.random.Generator = 0,
    max_iter: int = 100_000,
    max_epochs: float | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> FiniteSumResult:
    """The paper's Alg. 2 (:class:`VRHalpern`, monotone Lipschitz F) until residual <= tol, max_iter or max_epochs."""
    solver = VRHalpern(
        problem,
        u0,
        resolvent_scale=resolvent_scale,
        snapshot_probability=snapshot_probability,
        step_scale=step_scale,
        inner_factor=inner_factor,
        restart=restart,
        tol=tol,
        seed=seed,
    )
    return _run(solver, "vr_halpern", max_iter=max_iter, max_epochs=max_epochs, callback=callback, progress=progress)


def epochs_to_tolerance(result: FiniteSumResult, tol: float) -> float:
    """The first recorded epoch count at which the residual was <= ``tol``; inf if it never was."""
    tol = _non_negative(tol, "tol")
    residual, epochs = result.history["residual"], result.history["epochs"]
    reached = np.flatnonzero(residual <= tol)
    return float(epochs[reached[0]]) if reached.size else math.inf
