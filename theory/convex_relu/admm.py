"""ADMM for the exact convex program of two-layer ReLU training, with structured linear algebra and a polish.

Paper: Bai, Gautam & Sojoudi, "Efficient Global Optimization of Two-layer ReLU Networks: Quadratic-time
Algorithms and Adversarial Training" (arXiv 2201.01965), Algorithm 3.1; the program is step 3 of
:mod:`theory.convex_relu.problem`. Notation: X (n x d), patterns D_i (columns of D, n x P), E_i = 2 D_i - I,
beta the weight decay, and every (d, 2P) matrix holds the v-groups in its first P columns and the w-groups
in its last P (group i + P is w_i, with the pattern of i).

1. Splitting. Network copy u = [u_1..u_P, z_1..z_P], group-sparse copy v = [v_1..v_P, w_1..w_P], slacks
   s >= 0 (n x 2P), F u = sum_i D_i X (u_i - z_i), G u = [E_i X u_i, E_i X z_i]:
       min 1/2 ||F u - y||^2 + beta sum_g ||v_g|| + I(s >= 0)   s.t.  u = v,  G u = s,
   with scaled duals lambda (of u = v) and nu (of G u = s), penalty rho.
2. Updates (k -> k + 1), over-relaxed with alpha = RELAXATION (Eckstein & Bertsekas 1992; Boyd et al. 2011,
   section 3.4.3): the v-, s- and dual steps see u_r = alpha u + (1 - alpha) v^k and
   (G u)_r = alpha G u + (1 - alpha) s^k in place of u and G u (alpha = 1 is plain ADMM):
       u     = (I + F^T F / rho + G^T G)^{-1} (F^T y / rho + v - lambda + G^T (s - nu))
       v_g   = (1 - (beta / rho) / ||q_g||)_+ q_g,  q = u_r + lambda        (group soft-thresholding)
       s     = ((G u)_r + nu)_+
       lambda += u_r - v,   nu += (G u)_r - s
   With a = (G u)_r + nu^k: s = a_+, nu^{k+1} = min(a, 0) and s - nu = |a|, so one n x 2P array (a) carries
   both; nu <= 0 and mu = -rho nu >= 0 estimates the cone multipliers.
3. The linear system. G_i^T G_i = X^T E_i^2 X = X^T X, so I + G^T G = I_{2P} (x) M with M = I_d + X^T X, and
   F^T F = [[K, -K], [-K, K]] with K = Z^T Z, Z = [D_1 X .. D_P X] (n x dP). In sum and difference
   coordinates the 2dP x 2dP system splits into
       (I_P (x) M) (u + z) = r_1 + r_2,        (I_P (x) M + 2 K / rho) (u - z) = r_1 - r_2,
   one d x d inverse for the first and, for the second, whichever is cheaper:
   - ``"structured"``: the dP x dP matrix I_P (x) M + 2K/rho (K accumulated over row chunks, so Z is never
     formed), inverted once: 2 (dP)^2 flops per iteration;
   - ``"woodbury"``: (B + 2 Z^T Z / rho)^{-1} = B^{-1} - B^{-1} Z^T C^{-1} Z B^{-1} with B = I_P (x) M and
     C = rho/2 I_n + H o (D D^T), H = X M^{-1} X^T (n x n, since Z B^{-1} Z^T = sum_i D_i H D_i): four thin
     products with X and one n x n matrix-vector product per iteration.
   Both inverses are symmetric and applied by BLAS symv, which reads one triangle: n^2 / 2 (or (dP)^2 / 2)
   doubles streamed per iteration, the iteration's largest memory cost.
   ``"auto"`` takes the cheaper over an assumed run (setup, refactorisations, iterations) among those whose
   matrices fit in memory (n = 50,000: Woodbury's C would take 20 GB). Only rho/2 (in C) or 2/rho (in the
   structured matrix) changes with rho, so a new rho costs one refactorisation. Per iteration, with the
   products G u = E o (X u) and G^T (s - nu) = X^T (E o |a|), the work is 12 n d P flops (Woodbury) or
   8 n d P + 2 (dP)^2 (structured), plus one fused pass over the n x 2P arrays (numba).
4. Stopping (Boyd et al. 2011, section 3.3, relative form): with primal residual r = (u - v, G u - s) and dual
   residual d = rho ((v^+ - v) + G^T (s^+ - s)),
       ||r|| <= tol max(||(u, G u)||, ||(v, s)||)   and   ||d|| <= tol ||rho (lambda + G^T nu)||.
   G^T s and G^T nu are carried along in d x 2P form (G^T a = alpha X^T X u + (1 - alpha) G^T s + G^T nu), so
   this costs no product with X beyond the two of the iteration. The residuals are those of the unrelaxed u.
5. Adaptive rho (residual balancing, He, Yang & Wang 2000; Boyd et al. 2011, section 3.4.1): every
   RHO_EVERY = 50 iterations, if one relative residual exceeds RHO_BALANCE = 10 times the other, rho is
   multiplied or divided by RHO_FACTOR = 2, the scaled duals divided by the same factor, and the system
   refactorised. rho_0 (:func:`default_rho`) is scaled to the data.
6. Polish (certified stop). When both relative residuals first fall below POLISH_TRIGGER = 3e-3 (after a
   failed attempt, once they have fallen by another POLISH_BACKOFF; and at doubling checkpoints when ADMM
   stalls, see STALL_WINDOW), :func:`polish` solves the program
   restricted to the support of v exactly: a cone QP of |S| d variables (second-order cones for the group
   norms, the support's cone rows) by a primal-dual interior-point method warm-started from ADMM's iterate
   and multipliers, with active-set rounds adding violated rows and groups whose dual constraint fails. The
   polished point is feasible to rounding, and its duality gap is certified with the interior-point
   multipliers (:func:`theory.convex_relu.problem.duality_lower_bound`); the run stops when the certified
   relative gap is <= tol. ADMM's slow tail (thousands of iterations for 1e-5 feasibility, notes section 2.6)
   becomes a few hundred iterations plus ~25 interior-point steps, and needs no tuning of rho.

Backends: the iterations run on ``xp`` (numpy, or cupy on a GPU); the fused cone update is a numba kernel on
numpy. The polish and the certificate run on the host (their problems are small).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import scipy.linalg
from scipy.optimize import nnls

from theory.backend import blas_thread_limits, get_backend, to_numpy
from theory.convex_relu.problem import (
    ConvexCertificate,
    ConvexReLUProblem,
    certify,
    constraint_violation,
    convex_objective,
    duality_lower_bound,
)
from theory.solver import Callback, SolverResult, iterate

LINEAR_SOLVERS = ("auto", "woodbury", "structured")
ASSUMED_ITERATIONS, ASSUMED_REFACTORISATIONS = 1000, 5
"""The run assumed when ``linear_solver="auto"`` compares the two solvers' costs."""
MEMORY_LIMIT_BYTES = 4 * 2**30
"""``"auto"`` never picks a solver whose dense matrices need more than this."""

RELAXATION = 1.8
"""Over-relaxation alpha (module docstring, step 2). Iterations to the certified polish, alpha = 1 -> 1.8 (1 BLAS
thread): breast_cancer P = 50/100/200: 515/466/916 -> 329/298/480; planted n = 2000, P = 50/100: 461/357 -> 260/201.
On 48 small runs (moons, diabetes, breast_cancer, digits, planted; beta 1e-3..1; P 15/50) all still reach a
certified optimum: 21,624 iterations in all with alpha = 1, 16,159 with 1.6, 15,793 with 1.8."""
RHO_EVERY, RHO_BALANCE, RHO_FACTOR = 50, 10.0, 2.0
"""Residual balancing: at most every 50 iterations, when one relative residual is 10x the other, rho x/÷ 2."""
POLISH_TRIGGER, POLISH_BACKOFF = 3e-3, 0.3
"""First polish when both relative residuals are below 3e-3; after a failure, when they fell by another 0.3x.

Measured on breast_cancer and planted data (P = 50..200): at 1e-2 the support is often still growing (failed
attempts cost more than the iterations they save); at 3e-3 every run polished at its first attempt."""
STALL_WINDOW, STALL_FACTOR, STALL_LEVEL = 250, 0.5, 3e-2
"""Polish also when ADMM stalls: at iterations 250, 500, 1000, ... (doubling), if the larger relative residual is
below 3e-2 but has not halved since the previous checkpoint. With small beta (0.01-0.05 on moons, diabetes,
breast_cancer) the residuals can hover just above POLISH_TRIGGER for thousands of iterations, while the support
has long settled; the doubling bounds the attempts to log2(max_iter / 250)."""
SUPPORT_TOL, ROW_TOL, ALL_ROWS, ZERO_TOL = 1e-3, 1e-2, 200_000, 1e-9
"""Polish support: ||v_g|| > SUPPORT_TOL max ||v||; its rows: all when n |S| <= ALL_ROWS, else those of normalised
slack below ROW_TOL or with a multiplier (a group with a violated row later gets all of them); groups the
reduced problem shrinks below ZERO_TOL max ||v|| are set to zero."""
IPM_FLOOR, IPM_TOL, IPM_ACCEPT = 1e-6, 1e-9, 1e-5
"""Polish's interior-point method: row multipliers start at the given ones + 1e-6 beta / max_k ||x_k|| (so z > 0);
it stops at an error of 1e-9 (or when it stalls below 1e-5); above 1e-5 the polish fails. Below it, the certified
duality gap decides: with beta = 0.01 (moons, n = 200) the interior point stalls at 1e-7..5e-7 on ill-conditioned
reduced problems whose points still certify gaps below 1e-6 (accepting only 1e-7 cost 5400 ADMM iterations there)."""


# --------------------------------------------------------------------------------------------- linear algebra


def spd_inverse(xp, matrix):
    """A^{-1} for a symmetric positive definite A, through its Cholesky factor (LAPACK potrf + potri on numpy).

    The u-step applies inverses, not triangular solves: a symmetric matrix-vector product
    (:func:`symmetric_matvec`) streams one triangle once at full speed, while two triangular solves (potrs) with
    one right-hand side read the factor twice and run 3-5x slower here. The
    matrices inverted have condition numbers <= 1 + 2P/rho (Woodbury's C) or 1 + ||X||^2 (M) and the like.
    """
    if xp is not np:
        return xp.linalg.inv(matrix)
    factor, info = scipy.linalg.lapack.dpotrf(matrix, lower=True, clean=False)
    if info == 0:
        inverse, info = scipy.linalg.lapack.dpotri(factor, lower=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"matrix is not positive definite (LAPACK info {info})")
    return np.tril(inverse) + np.tril(inverse, -1).T


def symmetric_matvec(xp, A, x):
    """A x for a symmetric A, reading one triangle: BLAS dsymv on numpy, half the memory traffic of A @ x.

    A C-ordered symmetric A is its own transpose, so A.T is the Fortran-ordered array dsymv takes without a copy.
    The u-step streams a dense inverse once per iteration (n x n or dP x dP), its largest memory cost.
    """
    if xp is np:
        return scipy.linalg.blas.dsymv(1.0, A.T, x, lower=1)
    return A @ x


def masked_gram(xp, X, masks, signs=None, *, chunk_elements: int = 2**22):
    """Z^T Z for Z = [s_1 D_1 X .. s_k D_k X] (masks n x k, signs k), accumulated over row chunks.

    Z (n x dk) is never formed: each chunk of rows holds at most ``chunk_elements`` of its entries.
    """
    n, d = X.shape
    k = masks.shape[1]
    weights = masks if signs is None else masks * signs[None, :]
    gram = xp.zeros((d * k, d * k))
    rows = max(1, chunk_elements // (d * k))
    for start in range(0, n, rows):
        block = (weights[start : start + rows, :, None] * X[start : start + rows, None, :]).reshape(-1, d * k)
        gram += block.T @ block
    return gram


def linear_solver_costs(n: int, d: int, n_patterns: int) -> dict[str, tuple[float, float]]:
    """(flops over an assumed run, bytes of dense matrices) of the u-step for each linear solver.

    Woodbury: setup 2 n^2 (d + P) for H and D D^T, n^3 / 3 per factorisation, 4 n d P + 2 n^2 per iteration
    (on top of the 8 n d P both share); structured: setup 2 n (dP)^2 for K, (dP)^3 / 3 per factorisation,
    2 (dP)^2 per iteration. Memory: three n x n matrices, or two dP x dP ones.
    """
    dp, refactors, iterations = d * n_patterns, ASSUMED_REFACTORISATIONS, ASSUMED_ITERATIONS
    woodbury = 2 * n**2 * (d + n_patterns) + refactors * n**3 / 3 + iterations * (4 * n * dp + 2 * n**2)
    structured = 2 * n * dp**2 + refactors * dp**3 / 3 + iterations * 2 * dp**2
    return {"woodbury": (woodbury, 3 * 8.0 * n**2), "structured": (structured, 2 * 8.0 * dp**2)}


def choose_linear_solver(n: int, d: int, n_patterns: int) -> str:
    """The cheaper of :func:`linear_solver_costs` among those within :data:`MEMORY_LIMIT_BYTES`."""
    costs = linear_solver_costs(n, d, n_patterns)
    fitting = {name: flops for name, (flops, memory) in costs.items() if memory <= MEMORY_LIMIT_BYTES}
    if not fitting:
        raise MemoryError(
            f"problem: neither linear solver fits in {MEMORY_LIMIT_BYTES / 2**30:.0f} GiB "
            f"(n = {n}, dP = {d * n_patterns}); use fewer patterns"
        )
    return min(fitting, key=fitting.get)


class _SumSystem:
    """(I_P (x) M) x = r, applied column-wise with M^{-1} (d x d, well conditioned: M >= I)."""

    def __init__(self, xp, gram) -> None:
        d = gram.shape[0]
        self.M = xp.eye(d) + gram
        self.M_inv = spd_inverse(xp, self.M)

    def solve(self, rhs):
        return self.M_inv @ rhs


class _WoodburyDifference:
    """(I_P (x) M + 2 Z^T Z / rho)^{-1} r through C = rho/2 I_n + H o (D D^T) (module docstring, step 3)."""

    name = "woodbury"

    def __init__(self, xp, X, D, base: _SumSystem, rho: float) -> None:
        self.xp, self.X, self.D, self.base = xp, X, D, base
        self.kernel = (X @ base.M_inv @ X.T) * (D @ D.T)
        self.factorise(rho)

    def factorise(self, rho: float) -> None:
        n = self.X.shape[0]
        shifted = self.kernel.copy()
        diagonal = self.xp.arange(n)
        shifted[diagonal, diagonal] += rho / 2
        self.C_inv = spd_inverse(self.xp, shifted)

    def solve(self, rhs):
        xp = self.xp
        T = self.base.solve(rhs)  # B^{-1} r, d x P
        z = xp.sum(self.X * (self.D @ T.T), axis=1)  # Z B^{-1} r = sum_i D_i X t_i
        c = symmetric_matvec(xp, self.C_inv, z)
        return T - self.base.solve((self.X * c[:, None]).T @ self.D)  # - B^{-1} Z^T c


class _StructuredDifference:
    """(I_P (x) M + 2 K / rho)^{-1} r with the dP x dP matrix factorised (K = Z^T Z)."""

    name = "structured"

    def __init__(self, xp, X, D, base: _SumSystem, rho: float) -> None:
        self.xp, self.base = xp, base
        self.K = masked_gram(xp, X, D)
        self.factorise(rho)

    def factorise(self, rho: float) -> None:
        d, p = self.base.M.shape[0], self.K.shape[0] // self.base.M.shape[0]
        matrix = (2.0 / rho) * self.K
        for i in range(p):
            matrix[i * d : (i + 1) * d, i * d : (i + 1) * d] += self.base.M
        self.S_inv = spd_inverse(self.xp, matrix)

    def solve(self, rhs):
        d, p = rhs.shape
        solution = symmetric_matvec(self.xp, self.S_inv, rhs.T.reshape(-1))  # block i of the vector is column i
        return solution.reshape(p, d).T


# --------------------------------------------------------------------------------------------- cone update


@numba.njit(cache=True, fastmath=True)
def _cone_update_numba(XU, E, a, t, relaxation):  # pragma: no cover - compiled
    n, p = E.shape
    gu2 = s2 = r2 = 0.0
    for k in range(n):
        for half in range(2):
            for i in range(p):
                g = half * p + i
                e = E[k, i]
                gu = e * XU[k, g]
                old = a[k, g]
                value = relaxation * gu + (1.0 - relaxation) * max(old, 0.0) + min(old, 0.0)
                s = max(value, 0.0)
                a[k, g] = value
                t[k, g] = e * abs(value)
                gu2 += gu * gu
                s2 += s * s
                r2 += (gu - s) ** 2
    return gu2, s2, r2


def cone_update_array(xp, XU, E, a, t, relaxation: float = 1.0) -> tuple[float, float, float]:
    """The s- and nu-steps on a = G u + nu, in place, with over-relaxation (module docstring, step 2).

    ``XU`` = X u (n x 2P), ``E`` the signs (n x P), ``a`` holds s^k + nu^k on entry; on exit
    a = alpha G u + (1 - alpha) s^k + nu^k (so s^+ = a_+, nu^+ = min(a, 0)) and t = E o |a|, so that
    X^T t = G^T (s^+ - nu^+). Returns ||G u||^2, ||s^+||^2 and ||G u - s^+||^2 (the cone part of the primal
    residual, at the unrelaxed G u).
    """
    E2 = xp.concatenate([E, E], axis=1)
    gu = E2 * XU
    a[...] = relaxation * gu + (1.0 - relaxation) * xp.maximum(a, 0.0) + xp.minimum(a, 0.0)
    t[...] = E2 * xp.abs(a)
    s = xp.maximum(a, 0.0)
    return float(xp.sum(gu * gu)), float(xp.sum(s * s)), float(xp.sum((gu - s) ** 2))


def cone_update(xp, XU, E, a, t, relaxation: float = 1.0) -> tuple[float, float, float]:
    """:func:`cone_update_array`, fused into one pass by numba on numpy (it streams five n x 2P arrays once)."""
    if xp is np:
        return _cone_update_numba(XU, E, a, t, float(relaxation))
    return cone_update_array(xp, XU, E, a, t, relaxation)


def group_shrink(xp, Q, threshold: float):
    """Column-wise (1 - threshold / ||q_g||)_+ q_g: the prox of threshold * sum_g ||.||_2."""
    norms = xp.sqrt(xp.sum(Q * Q, axis=0))
    return Q * xp.maximum(0.0, 1.0 - threshold / xp.maximum(norms, 1e-300))


# --------------------------------------------------------------------------------------------- polish


@dataclass(frozen=True)
class PolishOutcome:
    """A polished point with its multipliers (n x P each) and certificate, or why polishing failed."""

    V: np.ndarray
    W: np.ndarray
    mu: np.ndarray
    xi: np.ndarray
    objective: float
    lower_bound: float
    relative_gap: float
    relative_violation: float
    rounds: int
    interior_point_steps: int
    message: str


def _stacked(problem: ConvexReLUProblem):
    """Patterns, signs and output signs for the 2P groups (v-groups then w-groups)."""
    p = problem.n_patterns
    D2 = np.hstack([problem.patterns, problem.patterns]).astype(float)
    E2 = np.hstack([problem.signs, problem.signs])
    sigma = np.concatenate([np.ones(p), -np.ones(p)])
    return D2, E2, sigma


def dual_norms(problem: ConvexReLUProblem, residual: np.ndarray, multipliers: np.ndarray) -> np.ndarray:
    """||X^T (D_g lam - sigma_g E_g m_g)|| for the 2P groups (sigma = +1 for v, -1 for w; lam = residual)."""
    D2, E2, sigma = _stacked(problem)
    return np.linalg.norm(problem.X.T @ (D2 * residual[:, None] - sigma * E2 * multipliers), axis=0)


def refine_multipliers(problem: ConvexReLUProblem, residual, multipliers, groups) -> np.ndarray:
    """Replace the multipliers of ``groups`` by NNLS ones: min ||X^T (D_g lam - sigma_g E_g m)|| over m >= 0.

    min_{m >= 0} ||a - B m|| is the distance from a = X^T D_g lam to the cone generated by the signed rows
    B = X^T E_g; an optimal m has at most d non-zeros. The NNLS is first solved over the rows the given
    multipliers use (at most 10 d of the largest: cheap, d x 10d), and over all n rows only when that leaves
    the group's dual constraint (norm <= beta) violated.
    """
    D2, E2, sigma = _stacked(problem)
    multipliers = multipliers.copy()
    for g in groups:
        basis = problem.X.T * (sigma[g] * E2[:, g])
        target = problem.X.T @ (D2[:, g] * residual)
        support = np.argsort(multipliers[:, g])[-10 * problem.d :]
        support = support[multipliers[support, g] > 0]
        norm = np.inf
        if support.size:
            values, norm = nnls(basis[:, support], target)
            multipliers[:, g] = 0.0
            multipliers[support, g] = values
        if norm > problem.beta:
            multipliers[:, g] = nnls(basis, target, maxiter=50 * problem.n)[0]
    return multipliers


class _SPDFactor:
    """Cholesky factor of a symmetric positive definite matrix (overwritten) after symmetric diagonal scaling (near
    the end of an interior-point run its blocks differ by many orders of magnitude: vanishing groups, active rows)."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.scale = 1.0 / np.sqrt(np.maximum(np.diag(matrix), 1e-300))
        scaled = matrix  # scaled in place: the caller's matrix is consumed
        scaled *= self.scale[:, None]
        scaled *= self.scale[None, :]
        try:
            self.factor = scipy.linalg.cho_factor(scaled, lower=True, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError:  # numerically semidefinite: a tiny ridge on the scaled (unit-diagonal) matrix
            scaled[np.diag_indices_from(scaled)] += 1e-12
            self.factor = scipy.linalg.cho_factor(scaled, lower=True, check_finite=False)

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        return self.scale * scipy.linalg.cho_solve(self.factor, self.scale * rhs, check_finite=False)


def _smallest_positive_roots(qa, qb, qc) -> np.ndarray:
    """Per entry, the smallest root > 0 of qa a^2 + qb a + qc (inf if none); qc > 0 (the start is inside)."""
    roots = np.full(qa.shape, np.inf)
    linear = np.abs(qa) <= 1e-14 * (np.abs(qb) + np.abs(qc))
    falling = linear & (qb < 0)
    roots[falling] = -qc[falling] / qb[falling]
    disc = qb * qb - 4 * qa * qc
    real = ~linear & (disc >= 0)
    sqrt_disc = np.sqrt(np.where(real, disc, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        candidates = np.stack([(-qb - sqrt_disc) / (2 * qa), (-qb + sqrt_disc) / (2 * qa)])
    candidates = np.where((candidates > 0) & real, candidates, np.inf)
    roots[real] = candidates.min(axis=0)[real]
    return roots


class _Cones:
    """Points of R_+^R x SOC^{d+1} x ... x SOC^{d+1}: ``rows`` (R,) and ``socs`` (k, d+1), and their algebra.

    Jordan product u o v: rows elementwise, second-order cones (u^T v, u_0 v_1 + v_0 u_1); identity e = (1, 0).
    """

    def __init__(self, rows: np.ndarray, socs: np.ndarray) -> None:
        self.rows, self.socs = rows, socs

    def __add__(self, other: _Cones) -> _Cones:
        return _Cones(self.rows + other.rows, self.socs + other.socs)

    def __sub__(self, other: _Cones) -> _Cones:
        return _Cones(self.rows - other.rows, self.socs - other.socs)

    def scaled(self, factor: float) -> _Cones:
        return _Cones(factor * self.rows, factor * self.socs)

    def dot(self, other: _Cones) -> float:
        return float(self.rows @ other.rows + np.sum(self.socs * other.socs))

    def norm(self) -> float:
        return math.sqrt(self.dot(self))

    def product(self, other: _Cones) -> _Cones:
        u, v = self.socs, other.socs
        head = np.sum(u * v, axis=1, keepdims=True)
        return _Cones(self.rows * other.rows, np.hstack([head, u[:, :1] * v[:, 1:] + v[:, :1] * u[:, 1:]]))

    def divide(self, other: _Cones) -> _Cones:
        """u with self o u = other (self in the interior)."""
        lam, v = self.socs, other.socs
        det = lam[:, 0] ** 2 - np.sum(lam[:, 1:] ** 2, axis=1)
        head = (lam[:, 0] * v[:, 0] - np.sum(lam[:, 1:] * v[:, 1:], axis=1)) / det
        tail = (v[:, 1:] - head[:, None] * lam[:, 1:]) / lam[:, :1]
        return _Cones(other.rows / self.rows, np.hstack([head[:, None], tail]))

    @staticmethod
    def identity(n_rows: int, k: int, d: int) -> _Cones:
        socs = np.zeros((k, d + 1))
        socs[:, 0] = 1.0
        return _Cones(np.ones(n_rows), socs)

    def inverse(self) -> _Cones:
        """u^{-1} = J u / (u^T J u) on each second-order cone, 1 / u on rows."""
        det = self.socs[:, 0] ** 2 - np.sum(self.socs[:, 1:] ** 2, axis=1)
        return _Cones(1.0 / self.rows, np.hstack([self.socs[:, :1], -self.socs[:, 1:]]) / det[:, None])

    def max_step(self, direction: _Cones) -> float:
        """Largest alpha with self + alpha direction in the cone (inf if unbounded)."""
        falling = direction.rows < 0
        alpha = float((-self.rows[falling] / direction.rows[falling]).min()) if falling.any() else math.inf
        u, du = self.socs, direction.socs
        roots = _smallest_positive_roots(
            du[:, 0] ** 2 - np.sum(du[:, 1:] ** 2, axis=1),
            2 * (u[:, 0] * du[:, 0] - np.sum(u[:, 1:] * du[:, 1:], axis=1)),
            u[:, 0] ** 2 - np.sum(u[:, 1:] ** 2, axis=1),
        )
        return min(alpha, float(roots.min()))


def _j_norms(socs: np.ndarray) -> np.ndarray:
    """sqrt(t^2 - ||x||^2) for each cone point (t, x); 0 on the boundary (or across it, by rounding)."""
    return np.sqrt(np.maximum(socs[:, 0] ** 2 - np.sum(socs[:, 1:] ** 2, axis=1), 0.0))


class _Scaling:
    """Nesterov-Todd scaling W (W z = W^{-1} s = lambda) of s, z in the interior (Vandenberghe 2010, CVXOPT
    cone solvers, section 4): rows W = diag(sqrt(s / z)); each second-order cone W = eta (2 v v^T - J),
    J = diag(1, -I), eta = (s^T J s / z^T J z)^{1/4}, v = (w + e) / sqrt(2 (w_0 + 1)) the square root of the
    NT point w = (s_bar + J z_bar) / sqrt(2 (1 + s_bar^T z_bar)) (bars: divided by their J-norms)."""

    def __init__(self, s: _Cones, z: _Cones) -> None:
        self.row_w = np.sqrt(s.rows / z.rows)
        d1 = s.socs.shape[1]
        s_norm, z_norm = _j_norms(s.socs), _j_norms(z.socs)
        s_bar, z_bar = s.socs / s_norm[:, None], z.socs / z_norm[:, None]
        gamma = np.sqrt((1 + np.sum(s_bar * z_bar, axis=1)) / 2)
        w = (s_bar + np.hstack([z_bar[:, :1], -z_bar[:, 1:]])) / (2 * gamma[:, None])  # Q_w z_bar = s_bar
        w[:, 0] += 1.0
        w /= np.sqrt(2 * w[:, :1])  # the Jordan square root of w: W = eta Q_{w^{1/2}}, W^2 = eta^2 Q_w
        eta = np.sqrt(s_norm / z_norm)
        J = np.diag(np.concatenate([[1.0], -np.ones(d1 - 1)]))
        outer = 2 * w[:, :, None] * w[:, None, :]
        self.W = eta[:, None, None] * (outer - J)
        Jw = w @ J
        self.W_inv = (2 * Jw[:, :, None] * Jw[:, None, :] - J) / eta[:, None, None]

    def apply(self, u: _Cones) -> _Cones:
        return _Cones(self.row_w * u.rows, np.einsum("kij,kj->ki", self.W, u.socs))

    def apply_inverse(self, u: _Cones) -> _Cones:
        return _Cones(u.rows / self.row_w, np.einsum("kij,kj->ki", self.W_inv, u.socs))


class _ReducedProblem:
    """min 1/2 ||J x - y||^2 + beta sum_j t_j  s.t.  (t_j, x_j) in SOC, C_j x_j >= 0, over the groups of a support.

    A cone QP in CVXOPT's form: min 1/2 x^T P x + q^T x s.t. G x + s = 0, s in K = R_+^R x SOC^{d+1} ...
    with variables (x_1..x_k, t_1..t_k), P = J^T J (J = [sigma_g D_g X]_{g in S}, formed once, so a Newton
    step costs O((kd)^3) whatever n), q = (-J^T y, beta 1), G x = (-C x, -(t_j, x_j)). C_j holds the rows of
    E_g X kept for group j (``cones[j]``); row vectors of the cone are concatenated group by group.
    ``previous``: a reduced problem of an earlier round, whose blocks of J^T J are reused (a polish round adds
    groups; J^T J costs n (kd)^2 flops, as much as several Newton steps).
    """

    def __init__(
        self,
        problem: ConvexReLUProblem,
        groups: np.ndarray,
        rows: list[np.ndarray],
        previous: _ReducedProblem | None = None,
    ) -> None:
        D2, E2, sigma = _stacked(problem)
        self.groups, self.beta, self.d, self.k = groups, problem.beta, problem.d, groups.size
        self.gram = _support_gram(problem, groups, previous)
        self.linear = (problem.X.T @ (D2[:, groups] * sigma[groups] * problem.y[:, None])).T.reshape(-1)
        self.constant = 0.5 * problem.y @ problem.y
        self.cones = [E2[r, g][:, None] * problem.X[r] for g, r in zip(groups, rows, strict=True)]
        self.bounds = np.concatenate([[0], np.cumsum([r.size for r in rows])])
        # Every group keeping all n rows (the usual case, n |S| <= ALL_ROWS): C x, C^T z and the rows' Newton
        # blocks become single products with X instead of k small ones.
        self.X, self.signs = problem.X, E2[:, groups].T
        self.all_rows = all(r.size == problem.n for r in rows)

    def slacks(self, x) -> np.ndarray:
        """C x, row by row (x: the k d network weights)."""
        d = self.d
        if self.all_rows:
            return (self.signs * (x.reshape(self.k, d) @ self.X.T)).ravel()
        return np.concatenate([C @ x[j * d : (j + 1) * d] for j, C in enumerate(self.cones)])

    def pull(self, z_rows) -> np.ndarray:
        """C^T z_rows, group by group (k x d)."""
        if self.all_rows:
            return (self.signs * z_rows.reshape(self.k, -1)) @ self.X
        return np.array([C.T @ z_rows[self.bounds[j] : self.bounds[j + 1]] for j, C in enumerate(self.cones)])

    def row_blocks(self, weights: np.ndarray) -> np.ndarray:
        """C_j^T diag(weights_j) C_j for each group (k x d x d); E_g^2 = 1, so with all rows: sum_r w_jr x_r x_r^T."""
        d, k = self.d, self.k
        if not self.all_rows:
            return np.array(
                [C.T @ (C * weights[self.bounds[j] : self.bounds[j + 1], None]) for j, C in enumerate(self.cones)]
            )
        weights = weights.reshape(k, -1)
        blocks = np.zeros((k, d * d))
        rows_per_chunk = max(1, 2**20 // (d * d))
        for start in range(0, self.X.shape[0], rows_per_chunk):
            X = self.X[start : start + rows_per_chunk]
            blocks += weights[:, start : start + rows_per_chunk] @ (X[:, :, None] * X[:, None, :]).reshape(len(X), -1)
        return blocks.reshape(k, d, d)

    def objective(self, x, t) -> float:
        return float(0.5 * x @ (self.gram @ x) - self.linear @ x + self.constant + self.beta * t.sum())

    def G(self, x, t) -> _Cones:
        return _Cones(-self.slacks(x), -np.hstack([t[:, None], x.reshape(self.k, self.d)]))

    def G_transpose(self, z: _Cones) -> tuple[np.ndarray, np.ndarray]:
        return -(self.pull(z.rows) + z.socs[:, 1:]).ravel(), -z.socs[:, 0]

    def newton_matrix(self, scaling: _Scaling) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """P + G^T W^{-2} G with t eliminated: the kd x kd matrix A - sum_j b_j b_j^T / c_j, b (k x d), c (k).

        G^T W^{-2} G is block diagonal: the rows' C_j^T W_j^{-2} C_j and each cone's W_j^{-2}, whose first row
        and column (c_j, b_j^T) couple t_j to x_j only; the Schur complement on t makes the matrix to factorise
        kd wide instead of k (d + 1) (13% fewer flops at d = 21).
        """
        d = self.d
        matrix = self.gram.copy()
        soc = np.einsum("kij,kjl->kil", scaling.W_inv, scaling.W_inv)
        coupling, t_diagonal = soc[:, 1:, 0], soc[:, 0, 0]
        blocks = self.row_blocks(scaling.row_w**-2) + soc[:, 1:, 1:]
        blocks -= coupling[:, :, None] * (coupling / t_diagonal[:, None])[:, None, :]
        for j in range(self.k):
            matrix[j * d : (j + 1) * d, j * d : (j + 1) * d] += blocks[j]
        return matrix, coupling, t_diagonal


def _support_gram(problem: ConvexReLUProblem, groups: np.ndarray, previous: _ReducedProblem | None) -> np.ndarray:
    """J^T J over ``groups``, copying the blocks of groups that ``previous`` already had (only new ones computed)."""
    D2, _, sigma = _stacked(problem)
    d = problem.d
    known = {} if previous is None else {g: j for j, g in enumerate(previous.groups)}
    old = [j for j, g in enumerate(groups) if g in known]
    new = [j for j, g in enumerate(groups) if g not in known]
    if not old:
        return masked_gram(np, problem.X, D2[:, groups], sigma[groups])
    gram = np.empty((groups.size * d, groups.size * d))
    index = (np.arange(groups.size)[:, None] * d + np.arange(d)).reshape(groups.size, d)
    source = np.concatenate([index[known[groups[j]]] for j in old])
    target = np.concatenate([index[j] for j in old])
    gram[np.ix_(target, target)] = previous.gram[np.ix_(source, source)]
    if new:
        columns = np.concatenate([index[j] for j in new])
        weights = D2[:, groups] * sigma[groups]  # J = [w_1 o X .. w_k o X]
        new_weights = weights[:, new]
        cross = np.zeros((len(new) * d, groups.size * d))
        rows_per_chunk = max(1, 2**22 // (d * groups.size))
        for start in range(0, problem.n, rows_per_chunk):
            X = problem.X[start : start + rows_per_chunk]
            J = (weights[start : start + rows_per_chunk, :, None] * X[:, None, :]).reshape(len(X), -1)
            J_new = (new_weights[start : start + rows_per_chunk, :, None] * X[:, None, :]).reshape(len(X), -1)
            cross += J_new.T @ J
        gram[columns, :] = cross
        gram[:, columns] = cross.T
    return gram


class _Newton:
    """The Newton system of one interior-point iteration, factorised once for its two right-hand sides."""

    def __init__(self, reduced: _ReducedProblem, scaling: _Scaling, lam: _Cones, r_x, r_z: _Cones) -> None:
        self.reduced, self.scaling, self.lam, self.r_x, self.r_z = reduced, scaling, lam, r_x, r_z
        matrix, self.coupling, self.t_diagonal = reduced.newton_matrix(scaling)
        self.factor = _SPDFactor(matrix)

    def solve(self, rhs_x: np.ndarray, rhs_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[[A, B], [B^T, diag(c)]] (dx, dt) = (rhs_x, rhs_t): dx from the Schur complement, then dt per cone."""
        k, d = self.coupling.shape
        dx = self.factor.solve(rhs_x - (self.coupling * (rhs_t / self.t_diagonal)[:, None]).ravel())
        dt = (rhs_t - np.sum(self.coupling * dx.reshape(k, d), axis=1)) / self.t_diagonal
        return dx, dt

    def direction(self, r_c: _Cones):
        """(dx, dt, ds, dz) with P dx + G^T dz = -r_x, G dx + ds = -r_z, lam o (W^{-1} ds + W dz) = r_c."""
        reduced, W = self.reduced, self.scaling
        u = self.lam.divide(r_c)
        b_z = self.r_z.scaled(-1.0) - W.apply(u)
        gx, gt = reduced.G_transpose(W.apply_inverse(W.apply_inverse(b_z)))
        m = reduced.k * reduced.d
        dx, dt = self.solve(-self.r_x[:m] + gx, -self.r_x[m:] + gt)
        G_step = reduced.G(dx, dt)
        dz = W.apply_inverse(W.apply_inverse(G_step - b_z))
        return dx, dt, self.r_z.scaled(-1.0) - G_step, dz


def _cone_qp(reduced: _ReducedProblem, x, t, row_multipliers, floor: float, tol: float, max_iter: int = 50):
    """Primal-dual path following with Mehrotra's predictor-corrector (CVXOPT's coneqp, Vandenberghe 2010).

    Starts from the strictly feasible (x, t), s = -G x, and a dual point built from ``row_multipliers``
    (plus ``floor``, so that z > 0) and the gradient: z_j = (beta, grad_j f - C_j^T z_rows), pulled inside the
    cone, so that the dual residual starts small (a centred start, z = mu / s, makes it huge where s is tiny).
    The direction keeps G x + s = 0 exactly (ds = -r_z - G dx) so the rows stay feasible. Two error measures,
    each the larger of a scaled dual residual ||P x + q + G^T z|| and s^T z / max(1, |f|): the *error* scales
    the residual by max(1, ||q||, beta sqrt(k)) and decides acceptance (<= IPM_ACCEPT); the *strict* one by
    beta sqrt(k), the size of the groups' dual constraints, which the certificate's gap depends on (when
    beta << ||q||, an accepted error still leaves ~1e-6 relative gaps). Iterates until the strict measure is
    below ``tol`` or gets worse (the Newton matrix is then too ill-conditioned to help); returns the
    strictly best iterate's x, t, z_rows, its error and the iteration count.
    """
    d, k = reduced.d, reduced.k
    s = reduced.G(x, t).scaled(-1.0)
    z_rows = row_multipliers + floor
    z_tail = (reduced.gram @ x - reduced.linear).reshape(k, d) - reduced.pull(z_rows)
    z_tail *= np.minimum(1.0, 0.9 * reduced.beta / np.maximum(np.linalg.norm(z_tail, axis=1), 1e-300))[:, None]
    z = _Cones(z_rows, np.hstack([np.full((k, 1), reduced.beta), z_tail]))
    degree = s.rows.size + k
    e = _Cones.identity(s.rows.size, k, d)
    q_norm = max(1.0, float(np.linalg.norm(reduced.linear)), reduced.beta * math.sqrt(k))
    dual_scale = reduced.beta * math.sqrt(k)
    best, best_error, best_strict = (x, t, z.rows), math.inf, math.inf
    for iteration in range(max_iter):
        Gz_x, Gz_t = reduced.G_transpose(z)
        r_x = np.concatenate([reduced.gram @ x - reduced.linear + Gz_x, reduced.beta + Gz_t])
        r_z = reduced.G(x, t) + s
        gap = s.dot(z)
        r_norm, relative_gap = float(np.linalg.norm(r_x)), gap / max(1.0, abs(reduced.objective(x, t)))
        error, strict = max(r_norm / q_norm, relative_gap), max(r_norm / dual_scale, relative_gap)
        if not math.isfinite(strict):
            break
        if strict < best_strict:
            best, best_error, best_strict = (x, t, z.rows), error, strict
        elif best_error <= IPM_ACCEPT:
            # The end game, on rounding: in 20 runs (the tests' and the benchmark's problems) the first step that
            # made the strict measure worse was followed by only worse ones (the dual residual grows ~10x a step).
            return *best, best_error, iteration
        if strict <= tol:
            return *best, best_error, iteration
        if not (_j_norms(s.socs).min() > 0 and _j_norms(z.socs).min() > 0):
            break  # a cone point on the boundary to rounding has no Nesterov-Todd scaling: keep the best
        scaling = _Scaling(s, z)
        lam = scaling.apply(z)
        newton = _Newton(reduced, scaling, lam, r_x, r_z)
        affine = lam.product(lam).scaled(-1.0)
        dx, dt, ds, dz = newton.direction(affine)
        sigma = (1 - min(1.0, s.max_step(ds), z.max_step(dz))) ** 3
        correction = scaling.apply_inverse(ds).product(scaling.apply(dz))
        dx, dt, ds, dz = newton.direction(affine - correction + e.scaled(sigma * gap / degree))
        alpha = min(1.0, 0.99 * min(s.max_step(ds), z.max_step(dz)))
        x, t, s, z = x + alpha * dx, t + alpha * dt, s + ds.scaled(alpha), z + dz.scaled(alpha)
    return *best, best_error, iteration


def _interior_point(cone: np.ndarray, x: np.ndarray, gate: np.ndarray, scale: float) -> np.ndarray | None:
    """(1 - w) x + w h with the smallest w in [0, 1] giving every row a slack >= 1e-3 of the gate ray h's.

    h = gate scaled to norm ``scale`` is strictly inside the pattern's cone (E X gate > 0 row by row); None
    when some kept row has zero slack on the gate (no interior start along it).
    """
    h = gate * (scale / np.linalg.norm(gate))
    s_x, s_h = cone @ x, cone @ h
    if s_h.size == 0:
        return x.copy()
    if s_h.min() <= 0:
        return None
    margin = 1e-3 * s_h
    short = s_x < margin
    w = float(((margin[short] - s_x[short]) / (s_h[short] - s_x[short])).max()) if short.any() else 0.0
    return (1 - w) * x + w * h


def _near_rows(problem: ConvexReLUProblem, V2, multipliers, groups) -> dict[int, np.ndarray]:
    """Rows kept for each group of the support: all of them while n |S| <= ALL_ROWS, else those with a positive
    multiplier or a normalised slack (E_g X v_g)_k / (||x_k|| ||v_g||) below ROW_TOL."""
    if problem.n * groups.size <= ALL_ROWS:
        return {g: np.arange(problem.n) for g in groups}
    _, E2, _ = _stacked(problem)
    scale = np.linalg.norm(problem.X, axis=1)[:, None] * np.maximum(np.linalg.norm(V2[:, groups], axis=0), 1e-300)
    near = (E2[:, groups] * (problem.X @ V2[:, groups]) < ROW_TOL * scale) | (multipliers[:, groups] > 0)
    return {g: np.flatnonzero(near[:, j]) for j, g in enumerate(groups)}


def polish(problem: ConvexReLUProblem, V2, multipliers, *, tol: float = 1e-6, max_rounds: int = 4) -> PolishOutcome:
    """Solve the program restricted to the support of V2 (d x 2P, e.g. ADMM's v) exactly, and certify it.

    Support S: groups with ||v_g|| > SUPPORT_TOL max ||v||; their rows: :func:`_near_rows`. Each round
    (at most ``max_rounds``):

    1. solves the reduced cone QP (:class:`_ReducedProblem`) by :func:`_cone_qp` from V2 moved strictly inside
       the kept rows' cone along the group's gate (:func:`_interior_point`), with ``multipliers`` (n x 2P, e.g.
       -rho nu) as the dual start; groups it shrinks below ZERO_TOL max ||v|| become zero;
    2. checks every row of the support's groups: a group with a violated row keeps all its rows from then on,
       and the round is repeated;
    3. checks every other group's dual constraint ||X^T (D_g r - sigma_g E_g m_g)|| <= beta, with ``multipliers``
       or NNLS ones (:func:`refine_multipliers`): violating groups enter S with all their rows (more than
       max(|S| / 4, 4) means the support guess is far off, and the polish fails: run more ADMM iterations).

    The point returned is feasible (the support's rows to rounding, the rest zero), and certified by
    :func:`theory.convex_relu.problem.duality_lower_bound` with the interior-point multipliers on S and the
    others elsewhere. On failure ``relative_gap`` is inf and ``message`` says why.
    """
    X, beta, d, p = problem.X, problem.beta, problem.d, problem.n_patterns
    D2, E2, sigma = _stacked(problem)
    gates = np.hstack([problem.gates, problem.gates])
    row_norms = np.linalg.norm(X, axis=1)
    floor = IPM_FLOOR * beta / row_norms.max()
    norms = np.linalg.norm(V2, axis=0)
    # Entering groups start at this size; the weights that fit y are of size ||y|| / ||X|| when V2 is zero.
    size = max(norms.max(), float(np.linalg.norm(problem.y)) / max(float(np.linalg.norm(X)), 1e-300))
    groups = np.flatnonzero(norms > SUPPORT_TOL * norms.max()) if norms.max() > 0 else np.zeros(0, dtype=int)
    start = {g: V2[:, g] for g in groups}
    rows = _near_rows(problem, V2, multipliers, groups)
    multipliers = multipliers.copy()
    steps, reduced = 0, None
    for round_ in range(1, max_rounds + 1):
        groups = np.array(sorted(start), dtype=int)
        V_new = np.zeros_like(V2)
        if groups.size:
            reduced = _ReducedProblem(problem, groups, [rows[g] for g in groups], reduced)
            x = []
            for j, g in enumerate(groups):
                scale = max(np.linalg.norm(start[g]), 1e-3 * size)
                point = _interior_point(reduced.cones[j], start[g], gates[:, g], scale)
                if point is None:
                    return _failed(problem, V2, f"no strictly feasible start for group {g} along its gate")
                x.append(point)
            x = np.concatenate(x)
            t = 1.001 * np.linalg.norm(x.reshape(groups.size, d), axis=1) + 1e-12 * size
            dual_start = np.concatenate([multipliers[rows[g], g] for g in groups])
            x, t, z_rows, error, used = _cone_qp(reduced, x, t, dual_start, floor, IPM_TOL)
            steps += used
            if error > IPM_ACCEPT:
                return _failed(problem, V2, f"the reduced problem was not solved (error {error:.1e}, {used} steps)")
            V_new[:, groups] = x.reshape(groups.size, d).T
            V_new[:, np.linalg.norm(V_new, axis=0) <= ZERO_TOL * size] = 0.0
            for j, g in enumerate(groups):
                multipliers[:, g] = 0.0
                multipliers[rows[g], g] = z_rows[reduced.bounds[j] : reduced.bounds[j + 1]]
            # 2. every row of the support's groups, up to the solver's rounding
            slack = E2[:, groups] * (X @ V_new[:, groups])
            rounding = 1e-12 * row_norms[:, None] * np.linalg.norm(V_new[:, groups], axis=0)
            violated = {g: np.flatnonzero(slack[:, j] < -rounding[:, j]) for j, g in enumerate(groups)}
            if any(v.size for v in violated.values()):
                rows |= {g: np.arange(problem.n) for g in groups if violated[g].size}
                start = {g: V_new[:, g] for g in groups}
                continue
        # 3. the dual constraints of the groups outside the support
        residual = np.sum(D2 * sigma * (X @ V_new), axis=1) - problem.y
        outside = np.setdiff1d(np.arange(2 * p), groups)
        dual = dual_norms(problem, residual, multipliers)
        multipliers = refine_multipliers(problem, residual, multipliers, outside[dual[outside] > beta])
        dual = dual_norms(problem, residual, multipliers)
        entering = outside[dual[outside] > beta * (1 + 0.1 * tol)]
        if entering.size > max(groups.size // 4, 4):
            return _failed(problem, V2, f"{entering.size} groups outside the support violate their dual constraint")
        if entering.size:
            start = {g: V_new[:, g] for g in groups} | {g: np.zeros(d) for g in entering}
            rows |= {g: np.arange(problem.n) for g in entering}
            continue
        V, W, mu, xi = V_new[:, :p], V_new[:, p:], multipliers[:, :p], multipliers[:, p:]
        objective = convex_objective(problem, V, W)
        lower = duality_lower_bound(problem, V, W, mu, xi)
        return PolishOutcome(
            V=V,
            W=W,
            mu=mu,
            xi=xi,
            objective=objective,
            lower_bound=lower,
            relative_gap=(objective - lower) / max(abs(objective), 1e-300),
            relative_violation=constraint_violation(problem, V, W)[1],
            rounds=round_,
            interior_point_steps=steps,
            message=f"polished in {round_} rounds, {steps} interior-point steps",
        )
    return _failed(problem, V2, f"the active set did not settle in {max_rounds} rounds ({steps} interior-point steps)")


def _failed(problem: ConvexReLUProblem, V2, message: str) -> PolishOutcome:
    p = problem.n_patterns
    empty = np.zeros((problem.n, p))
    return PolishOutcome(V2[:, :p], V2[:, p:], empty, empty, np.nan, -np.inf, np.inf, np.nan, 0, 0, message)


# --------------------------------------------------------------------------------------------- ADMM


def default_rho(problem: ConvexReLUProblem) -> float:
    """rho_0 = beta ||X||_2 / (10 ||y||): balances the scaled duals against the primal groups at the solution.

    An active group's scaled dual lambda_g = -beta v_g / (rho ||v_g||) has norm beta / rho, while the weights
    that fit y have norms of order ||y|| / ||X||_2; equal sizes give rho = beta ||X||_2 / ||y||. The factor 1/10
    and the formula were checked on breast_cancer and planted-ReLU data for beta from 0.1% to 10% of
    max_i ||X^T D_i y||: the iteration count to polish stays within ~1.5x of the best fixed rho (whose value
    moves over three decades with beta). rho_0 is invariant to rescaling y and beta together, as the iterates.
    """
    norm_y = float(np.linalg.norm(problem.y))
    if norm_y == 0:
        return 1.0
    norm_X = math.sqrt(float(np.linalg.eigvalsh(problem.X.T @ problem.X)[-1]))
    return problem.beta * norm_X / (10 * norm_y)


def _positive_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{name}: expected a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return float(value)


class ConvexReLUADMM:
    """Stepped ADMM on a :class:`ConvexReLUProblem` (module docstring, steps 1-6).

    ``step()`` runs one iteration and returns its metrics: relative ``primal_residual`` and
    ``dual_residual`` (step 4), ``rho``; every ``metrics_every`` iterations also ``objective`` and
    ``constraint_violation`` (relative, :func:`theory.convex_relu.problem.constraint_violation`) of the
    group-sparse copy; ``polish_gap`` (certified relative gap, inf on failure) when a polish was tried.
    Accessors: ``V``, ``W`` (d x P numpy: the polished point once polished, else the group-sparse copy),
    ``multipliers`` (mu, xi; n x P), ``rho``, ``primal_residual``, ``dual_residual``, ``polished``.
    """

    def __init__(
        self,
        problem: ConvexReLUProblem,
        *,
        rho: float | None = None,
        tol: float = 1e-6,
        adaptive_rho: bool = True,
        polish: bool = True,
        relaxation: float = RELAXATION,
        linear_solver: str = "auto",
        backend: str = "auto",
        metrics_every: int = 10,
    ) -> None:
        if not isinstance(problem, ConvexReLUProblem):
            raise TypeError(f"problem: expected a ConvexReLUProblem, got {type(problem).__name__}")
        self.problem = problem
        self.tol = _positive_float(tol, "tol")
        rho = default_rho(problem) if rho is None else _positive_float(rho, "rho")
        if linear_solver not in LINEAR_SOLVERS:
            raise ValueError(f"linear_solver: expected one of {LINEAR_SOLVERS}, got {linear_solver!r}")
        if isinstance(metrics_every, bool) or not isinstance(metrics_every, int | np.integer) or metrics_every < 1:
            raise ValueError(f"metrics_every: expected a positive integer, got {metrics_every!r}")
        self.adaptive_rho, self.use_polish, self.metrics_every = bool(adaptive_rho), bool(polish), int(metrics_every)
        self.relaxation = _positive_float(relaxation, "relaxation")
        if self.relaxation >= 2:
            raise ValueError(f"relaxation: expected a number in (0, 2), got {relaxation!r}")
        self.xp = xp = get_backend(backend)
        n, d, p = problem.n, problem.d, problem.n_patterns
        if linear_solver == "auto":
            linear_solver = choose_linear_solver(n, d, p)
        # C order throughout: sampled patterns come out of fancy indexing in Fortran order, which costs the fused
        # kernel (row-wise) a cache miss per entry.
        self.X, self.y = xp.ascontiguousarray(xp.asarray(problem.X)), xp.asarray(problem.y)
        self.D = xp.ascontiguousarray(xp.asarray(problem.patterns, dtype=float))
        self.E = xp.ascontiguousarray(xp.asarray(problem.signs))
        self.gram = self.X.T @ self.X
        self._sum = _SumSystem(xp, self.gram)
        system = _WoodburyDifference if linear_solver == "woodbury" else _StructuredDifference
        self._difference = system(xp, self.X, self.D, self._sum, rho)
        self.linear_solver = linear_solver
        self.rho = rho
        Fty = self.X.T @ (self.D * self.y[:, None])
        self._Fty = xp.concatenate([Fty, -Fty], axis=1)
        self._V = xp.zeros((d, 2 * p))
        self._lam = xp.zeros((d, 2 * p))
        self._a = xp.zeros((n, 2 * p))  # G u + nu before the split: s = a_+, nu = min(a, 0)
        self._abs = xp.zeros((n, 2 * p))  # E o |a|, so that X^T abs = G^T (s - nu)
        self._XU = xp.zeros((n, 2 * p))
        self._Gt_a = xp.zeros((d, 2 * p))  # G^T a = G^T (s + nu)
        self._Gt_abs = xp.zeros((d, 2 * p))  # G^T (s - nu)
        self.n_iter = 0
        self.primal_residual = self.dual_residual = math.inf
        self.polished: PolishOutcome | None = None
        self.best_polish: PolishOutcome | None = None
        self._polish_level = max(POLISH_TRIGGER, self.tol)
        self._checkpoint, self._checkpoint_residual = STALL_WINDOW, math.inf

    # --- accessors

    @property
    def converged(self) -> bool:
        if self.polished is not None:
            return True
        return self.primal_residual <= self.tol and self.dual_residual <= self.tol

    @property
    def V(self) -> np.ndarray:
        return self.polished.V if self.polished is not None else to_numpy(self._V[:, : self.problem.n_patterns])

    @property
    def W(self) -> np.ndarray:
        return self.polished.W if self.polished is not None else to_numpy(self._V[:, self.problem.n_patterns :])

    @property
    def multipliers(self) -> tuple[np.ndarray, np.ndarray]:
        """mu, xi >= 0 (n x P): the polish's, or -rho nu from ADMM's scaled cone duals."""
        if self.polished is not None:
            return self.polished.mu, self.polished.xi
        mult = to_numpy(-self.rho * self.xp.minimum(self._a, 0.0))
        p = self.problem.n_patterns
        return mult[:, :p], mult[:, p:]

    # --- the iteration

    def _solve_u(self):
        xp, p = self.xp, self.problem.n_patterns
        rhs = self._Fty / self.rho + self._V - self._lam + self._Gt_abs
        first, second = rhs[:, :p], rhs[:, p:]
        total = self._sum.solve(first + second)
        difference = self._difference.solve(first - second)
        return xp.concatenate([(total + difference) / 2, (total - difference) / 2], axis=1)

    def step(self) -> dict[str, float]:
        xp, rho = self.xp, self.rho
        self.n_iter += 1
        U = self._solve_u()
        xp.matmul(self.X, U, out=self._XU)
        alpha = self.relaxation
        gu2, s2, cone_primal2 = cone_update(xp, self._XU, self.E, self._a, self._abs, alpha)
        Gt_nu_old = (self._Gt_a - self._Gt_abs) / 2
        Gt_s_old = (self._Gt_a + self._Gt_abs) / 2
        self._Gt_abs = self.X.T @ self._abs
        # G^T (alpha G u + (1 - alpha) s + nu), with G_i^T G_i = X^T X
        self._Gt_a = alpha * (self.gram @ U) + (1 - alpha) * Gt_s_old + Gt_nu_old
        Gt_s = (self._Gt_a + self._Gt_abs) / 2
        relaxed = alpha * U + (1 - alpha) * self._V
        V = group_shrink(xp, relaxed + self._lam, self.problem.beta / rho)
        self._lam += relaxed - V
        primal = math.sqrt(float(xp.sum((U - V) ** 2)) + cone_primal2)
        dual = rho * float(xp.linalg.norm((V - self._V) + (Gt_s - Gt_s_old)))
        primal_scale = max(math.sqrt(float(xp.sum(U * U)) + gu2), math.sqrt(float(xp.sum(V * V)) + s2))
        dual_scale = rho * float(xp.linalg.norm(self._lam + (self._Gt_a - self._Gt_abs) / 2))
        self._V = V
        self.primal_residual = primal / max(primal_scale, 1e-300)
        self.dual_residual = dual / max(dual_scale, 1e-300)
        metrics = {"primal_residual": self.primal_residual, "dual_residual": self.dual_residual, "rho": rho}
        if self.n_iter % self.metrics_every == 0:
            metrics.update(self._quality())
        worst = max(self.primal_residual, self.dual_residual)
        if self.use_polish and (worst <= self._polish_level or self._stalled(worst)):
            metrics.update(self._try_polish())
            self._polish_level = min(self._polish_level, worst * POLISH_BACKOFF)
        if self.adaptive_rho and self.polished is None and self.n_iter % RHO_EVERY == 0:
            self._balance()
        return metrics

    def _quality(self) -> dict[str, float]:
        """Objective and relative constraint violation of the group-sparse copy."""
        xp, p = self.xp, self.problem.n_patterns
        XV = self.X @ self._V
        residual = xp.sum(self.D * (XV[:, :p] - XV[:, p:]), axis=1) - self.y
        norms = xp.sqrt(xp.sum(self._V**2, axis=0))
        objective = 0.5 * float(residual @ residual) + self.problem.beta * float(norms.sum())
        worst = max(0.0, -float(xp.min(xp.concatenate([self.E, self.E], axis=1) * XV)))
        scale = max(1.0, float(xp.max(xp.abs(self.X))) * float(norms.sum()))
        return {"objective": objective, "constraint_violation": worst / scale}

    def _stalled(self, worst: float) -> bool:
        """At the doubling checkpoints: residuals below STALL_LEVEL that did not halve since the last one."""
        if self.n_iter < self._checkpoint:
            return False
        stalled = STALL_FACTOR * self._checkpoint_residual < worst <= STALL_LEVEL
        self._checkpoint, self._checkpoint_residual = 2 * self._checkpoint, worst
        return stalled

    def _try_polish(self) -> dict[str, float]:
        mult = to_numpy(-self.rho * self.xp.minimum(self._a, 0.0))
        outcome = polish(self.problem, to_numpy(self._V), mult, tol=self.tol)
        if self.best_polish is None or outcome.relative_gap < self.best_polish.relative_gap:
            self.best_polish = outcome
        if outcome.relative_gap <= self.tol:
            self.polished = outcome
            return {
                "polish_gap": outcome.relative_gap,
                "objective": outcome.objective,
                "constraint_violation": outcome.relative_violation,
            }
        return {"polish_gap": outcome.relative_gap}

    def _balance(self) -> None:
        """Residual balancing (module docstring, step 5)."""
        ratio = self.primal_residual / max(self.dual_residual, 1e-300)
        if ratio > RHO_BALANCE:
            self.set_rho(self.rho * RHO_FACTOR)
        elif ratio < 1 / RHO_BALANCE:
            self.set_rho(self.rho / RHO_FACTOR)

    def set_rho(self, rho: float) -> None:
        """Change the penalty: scaled duals (lambda, nu) times rho_old / rho, and refactorise."""
        rho = _positive_float(rho, "rho")
        xp, scale = self.xp, self.rho / rho
        self._lam *= scale
        Gt_s = (self._Gt_a + self._Gt_abs) / 2
        Gt_nu = (self._Gt_a - self._Gt_abs) / 2
        self._Gt_a, self._Gt_abs = Gt_s + scale * Gt_nu, Gt_s - scale * Gt_nu
        self._a[...] = xp.maximum(self._a, 0.0) + scale * xp.minimum(self._a, 0.0)
        self._abs[...] = xp.concatenate([self.E, self.E], axis=1) * xp.abs(self._a)
        self._difference.factorise(rho)
        self.rho = rho


@dataclass(frozen=True, kw_only=True)
class ADMMResult(SolverResult):
    """``V``, ``W`` (d x P), their convex ``objective``, the ``certificate`` (duality gap, violation, recovered
    network), the final ``rho``, whether the point was ``polished``, and the linear solver and backend used."""

    V: np.ndarray
    W: np.ndarray
    objective: float
    certificate: ConvexCertificate
    rho: float
    polished: bool
    linear_solver: str
    backend: str


def solve_admm(
    problem: ConvexReLUProblem,
    *,
    rho: float | None = None,
    tol: float = 1e-6,
    max_iter: int = 10_000,
    adaptive_rho: bool = True,
    polish: bool = True,
    relaxation: float = RELAXATION,
    linear_solver: str = "auto",
    callback: Callback | None = None,
    callback_every: int = 1,
    backend: str = "auto",
    metrics_every: int = 10,
    blas_threads: int | None = 1,
    progress: bool = False,
) -> ADMMResult:
    """Run :class:`ConvexReLUADMM` until converged (residuals <= tol, or a polished point certified to a
    relative duality gap <= tol), the callback returns True, or ``max_iter``; then certify the final point.

    The final point is the accepted polish; failing that, the best polish attempt whose gap was certified
    (feasible, so a better answer than ADMM's infeasible iterate; the message gives its gap); failing that,
    ADMM's group-sparse copy, with -rho nu refined by NNLS for the groups whose dual constraint it violates.

    ``relaxation`` is the over-relaxation alpha in (0, 2) (module docstring, step 2; 1 is plain ADMM).
    ``blas_threads`` sets the BLAS threads for the run, setup included (None: leave them alone): numpy's BLAS, which
    runs ADMM's products, gets them and every other BLAS library one (:func:`blas_thread_limits`; two threaded
    OpenBLAS libraries made an iteration ~20x slower on 2 cores). The default is one thread: ADMM's products are
    thin (n x d times d x 2P, d ~ 10-30), and on a 2-core machine a second thread made a solve between 40% slower
    and 20% faster from run to run.
    """
    if blas_threads is not None and (
        isinstance(blas_threads, bool) or not isinstance(blas_threads, int | np.integer) or blas_threads < 1
    ):
        raise ValueError(f"blas_threads: expected a positive integer or None, got {blas_threads!r}")
    with blas_thread_limits(None if blas_threads is None else int(blas_threads)):  # the setup too
        solver = ConvexReLUADMM(
            problem,
            rho=rho,
            tol=tol,
            adaptive_rho=adaptive_rho,
            polish=polish,
            relaxation=relaxation,
            linear_solver=linear_solver,
            backend=backend,
            metrics_every=metrics_every,
        )
        outcome = iterate(
            solver, max_iter=max_iter, callback=callback, callback_every=callback_every, progress=progress
        )
    fields = outcome.fields()
    final = solver.polished or solver.best_polish
    if final is not None and math.isfinite(final.relative_gap):
        V, W, mu, xi = final.V, final.W, final.mu, final.xi
    else:
        final = None
        V, W = solver.V, solver.W
        mu, xi = solver.multipliers
        residual = np.sum(problem.patterns * (problem.X @ (V - W)), axis=1) - problem.y
        mult = np.hstack([mu, xi])
        dual = dual_norms(problem, residual, mult)
        mult = refine_multipliers(problem, residual, mult, np.flatnonzero(dual > problem.beta))
        mu, xi = mult[:, : problem.n_patterns], mult[:, problem.n_patterns :]
    certificate = certify(problem, V, W, mu, xi)
    if solver.polished is not None:
        fields["message"] = (
            f"{outcome.message}: {solver.polished.message}, certified relative gap {certificate.relative_gap:.1e}"
        )
    elif final is not None:
        fields["message"] = (
            f"{outcome.message}; returning the best polished point: certified relative gap "
            f"{certificate.relative_gap:.1e} > tol={tol:g}"
        )
    return ADMMResult(
        V=V,
        W=W,
        objective=certificate.objective,
        certificate=certificate,
        rho=solver.rho,
        polished=final is not None,
        linear_solver=solver.linear_solver,
        backend=solver.xp.__name__,
        **fields,
    )
