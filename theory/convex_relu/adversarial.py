"""Convex adversarial training of two-layer ReLU networks with frozen, perturbation-robust patterns.

Paper: Bai, Gautam & Sojoudi, "Efficient Global Optimization of Two-layer ReLU Networks: Quadratic-time
Algorithms and Adversarial Training" (arXiv 2201.01965), §4 "Convex Adversarial Training"; the ACC version is
arXiv 2105.12237. The program below is our derivation (notes ``convex_relu.md`` §2.9); whether the paper states
it in exactly this form is unverified.

Setting. X (n x d) with rows x_k; when ``problem.bias`` the last column is ones and is never perturbed. An
attacker moves x_k to x_k + delta with delta_bias = 0 and ||delta||_p <= eps (p = inf or 2). For a vector a,
a^pert drops the bias coordinate, and ||.||_* is the dual norm (l1 for p = inf, l2 for p = 2), so that

    min_{||delta||_p <= eps} (x + delta)^T a = x^T a - eps ||a^pert||_*        (Hoelder, attained).

1. Robust cones. Keep the patterns D_i = diag(d_i) fixed and demand that they hold on every eps-ball:
   (2 d_ik - 1) (x_k + delta)^T v_i >= 0 for all ||delta|| <= eps, i.e.

       (2 d_ik - 1) x_k^T v_i - eps ||v_i^pert||_* >= 0   for all k, i   (the same for w_i).

2. On the ball around x_k every neuron of the recovered network then keeps its pattern, so the network
   f(x) = sum_j (x^T u_j)_+ alpha_j is affine there: f(x_k + delta) = yhat_k + delta^T g_k with
   yhat_k = sum_i d_ik x_k^T (v_i - w_i) and g_k = sum_i d_ik (v_i - w_i)^pert. Hence the worst cases are
   closed-form:

       hinge (y_k in {-1, +1}): max_delta (1 - y_k f(x_k + delta))_+ = (1 - y_k yhat_k + eps ||g_k||_*)_+
       squared:                 max_delta (f(x_k + delta) - y_k)^2 / 2 = (|yhat_k - y_k| + eps ||g_k||_*)^2 / 2

3. The robust program (convex: an SOCP; an LP plus second-order cones for l_inf):

       min_{v, w} sum_k robust_loss_k + beta sum_i (||v_i||_2 + ||w_i||_2)   s.t. the robust cones of step 1.

Exact or upper bound. For every feasible (V, W), step 2 is an identity, not an inequality: the loss term equals the
true worst-case loss of the network recovered from (V, W) (``recover_network``), and the penalty equals its weight
decay beta/2 sum(||u_j||^2 + alpha_j^2). So the program's objective at its solution is the *exact* adversarial
training objective of the network it returns; no attack can push that network's loss above the program's loss term
(up to solver tolerance and the neurons ``recover_network`` drops). As a statement about adversarial *training*, the
optimum is an *upper bound* on the minimum of sum_k max_delta loss + decay over all two-layer networks (of width at
least the recovered one's): the program only searches networks whose every neuron keeps one pattern on every
training ball (a restriction even when all patterns are listed), and, with sampled patterns, only those patterns. At
eps = 0 the hinge program is the standard convex hinge program, and the squared one is
:func:`theory.convex_relu.reference.solve_cvxpy` (the vanishing norm terms are then left out of the model).

V and W hold v_i and w_i as the columns of d x P matrices, as in :mod:`theory.convex_relu.problem`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from theory.convex_relu.problem import ConvexReLUProblem, ReLUNetwork
from theory.convex_relu.reference import solve_timed

NORMS = ("inf", "2")
ROBUST_LOSSES = ("hinge", "squared")


@dataclass(frozen=True)
class RobustSolution:
    """cvxpy's solution of the robust program: V, W (d x P), its objective and loss term, status and time."""

    V: np.ndarray
    W: np.ndarray
    objective: float
    loss_value: float
    status: str
    seconds: float
    eps: float
    norm: str
    loss: str


def _check_problem(problem) -> ConvexReLUProblem:
    if not isinstance(problem, ConvexReLUProblem):
        raise TypeError(f"problem: expected a ConvexReLUProblem, got {type(problem).__name__}")
    return problem


def _check_eps(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, int | float | np.integer | np.floating):
        raise TypeError(f"eps: expected a real number, got {type(eps).__name__}")
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps: expected a finite number >= 0, got {eps!r}")
    return float(eps)


def _check_norm(norm) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {NORMS} (the attack's l_p ball), got {norm!r}")
    return norm


def _check_loss(problem: ConvexReLUProblem, loss) -> str:
    if loss not in ROBUST_LOSSES:
        raise ValueError(f"loss: expected one of {ROBUST_LOSSES}, got {loss!r}")
    if loss == "hinge" and not np.all(np.isin(problem.y, (-1.0, 1.0))):
        raise ValueError("problem.y: the hinge loss needs labels in {-1, +1}; map {0, 1} labels by y = 2 t - 1")
    return loss


def perturbed_rows(problem: ConvexReLUProblem) -> slice:
    """Coordinates an attacker may move: all but the last (the bias column) when ``problem.bias``."""
    return slice(0, problem.d - 1) if problem.bias else slice(0, problem.d)


def dual_norm_order(norm: str) -> int:
    """The order q of ||.||_* for an l_p attack: 1 for p = inf, 2 for p = 2."""
    return {"inf": 1, "2": 2}[_check_norm(norm)]


def robust_margins(problem: ConvexReLUProblem, V, eps: float, *, norm: str = "inf") -> np.ndarray:
    """n x P: (2 d_ik - 1) x_k^T v_i - eps ||v_i^pert||_*; >= 0 iff pattern i holds on x_k's whole eps-ball."""
    eps, q = _check_eps(eps), dual_norm_order(norm)
    V = np.asarray(V, dtype=float)
    return problem.signs * (problem.X @ V) - eps * np.linalg.norm(V[perturbed_rows(problem)], ord=q, axis=0)


def network_ball_margins(problem: ConvexReLUProblem, network: ReLUNetwork, eps: float, *, norm="inf") -> np.ndarray:
    """n x m: for neuron j with source pattern i_j, (2 d_{k i_j} - 1) x_k^T u_j - eps ||u_j^pert||_*.

    Non-negative everywhere iff every neuron's activation is constant on every training point's eps-ball.
    """
    eps, q = _check_eps(eps), dual_norm_order(norm)
    signs = problem.signs[:, network.pattern]
    return signs * (problem.X @ network.hidden) - eps * np.linalg.norm(
        network.hidden[perturbed_rows(problem)], ord=q, axis=0
    )


def robust_losses(problem: ConvexReLUProblem, V, W, eps: float, *, norm: str = "inf", loss: str = "hinge"):
    """Per-sample worst-case losses of step 2 (valid as the network's worst case when the robust cones hold)."""
    eps, q, loss = _check_eps(eps), dual_norm_order(norm), _check_loss(problem, loss)
    difference = np.asarray(V, dtype=float) - np.asarray(W, dtype=float)
    yhat = np.sum(problem.patterns * (problem.X @ difference), axis=1)
    slopes = difference[perturbed_rows(problem)] @ problem.patterns.T  # g_k as columns, d' x n
    spread = eps * np.linalg.norm(slopes, ord=q, axis=0)
    if loss == "hinge":
        return np.maximum(1.0 - problem.y * yhat + spread, 0.0)
    return 0.5 * (np.abs(yhat - problem.y) + spread) ** 2


def robust_objective(problem: ConvexReLUProblem, V, W, eps: float, *, norm: str = "inf", loss: str = "hinge"):
    """sum_k robust_loss_k + beta sum_i (||v_i|| + ||w_i||): the robust program's objective at (V, W)."""
    penalty = np.linalg.norm(V, axis=0).sum() + np.linalg.norm(W, axis=0).sum()
    return float(robust_losses(problem, V, W, eps, norm=norm, loss=loss).sum() + problem.beta * penalty)


def hinge_loss(problem: ConvexReLUProblem, predictions) -> float:
    """sum_k (1 - y_k f(x_k))_+ for predictions f(x_k)."""
    return float(np.maximum(1.0 - problem.y * np.asarray(predictions, dtype=float), 0.0).sum())


def _result(program, loss_term, V, W, status, seconds, eps, norm, loss, shape) -> RobustSolution:
    if V.value is None or W.value is None:
        nan = np.full(shape, np.nan)
        return RobustSolution(nan, nan, np.nan, np.nan, status, seconds, eps, norm, loss)
    return RobustSolution(
        V.value, W.value, float(program.value), float(loss_term.value), status, seconds, eps, norm, loss
    )


def solve_robust_cvxpy(
    problem: ConvexReLUProblem,
    eps: float,
    *,
    norm: str = "inf",
    loss: str = "hinge",
    solver: str = "CLARABEL",
    **options,
) -> RobustSolution:
    """The robust program of step 3 for attacks ||delta||_norm <= eps on the non-bias features.

    ``loss="hinge"`` needs ``problem.y`` in {-1, +1}; ``loss="squared"`` uses 1/2 (...)^2 as ``problem.py``.
    Failure is data: ``status`` says what the solver returned and the arrays are NaN when it gave nothing.
    """
    problem = _check_problem(problem)
    eps, q, loss = _check_eps(eps), dual_norm_order(norm), _check_loss(problem, loss)
    d, p, n = problem.d, problem.n_patterns, problem.n
    V, W = cp.Variable((d, p)), cp.Variable((d, p))
    D, E, X, rows = problem.patterns.astype(float), problem.signs, problem.X, perturbed_rows(problem)
    yhat = cp.sum(cp.multiply(D, X @ (V - W)), axis=1)
    penalty = cp.sum(cp.norm(V, 2, axis=0)) + cp.sum(cp.norm(W, 2, axis=0))
    if eps == 0:  # the norm terms vanish; leaving them out spares the solver 2P + n idle cones
        margin = cp.multiply(problem.y, yhat)
        loss_term = cp.sum(cp.pos(1 - margin)) if loss == "hinge" else 0.5 * cp.sum_squares(yhat - problem.y)
        constraints = [cp.multiply(E, X @ V) >= 0, cp.multiply(E, X @ W) >= 0]
    else:
        spread = eps * cp.norm((V - W)[rows, :] @ D.T, q, axis=0)  # eps ||g_k||_* for each k
        if loss == "hinge":
            loss_term = cp.sum(cp.pos(1 - cp.multiply(problem.y, yhat) + spread))
        else:
            loss_term = 0.5 * cp.sum(cp.square(cp.abs(yhat - problem.y) + spread))
        ones = np.ones((n, 1))
        constraints = [  # (2 D_i - I) X v_i >= eps ||v_i^pert||_* 1, column by column
            cp.multiply(E, X @ V) >= eps * ones @ cp.reshape(cp.norm(V[rows, :], q, axis=0), (1, p), order="C"),
            cp.multiply(E, X @ W) >= eps * ones @ cp.reshape(cp.norm(W[rows, :], q, axis=0), (1, p), order="C"),
        ]
    program = cp.Problem(cp.Minimize(loss_term + problem.beta * penalty), constraints)
    status, seconds = solve_timed(program, solver, options)
    return _result(program, loss_term, V, W, status, seconds, eps, norm, loss, (d, p))


def solve_standard_hinge_cvxpy(problem: ConvexReLUProblem, *, solver: str = "CLARABEL", **options) -> RobustSolution:
    """The standard convex hinge program (eps = 0), written independently of :func:`solve_robust_cvxpy`:

    min sum_k (1 - y_k sum_i d_ik x_k^T (v_i - w_i))_+ + beta sum_i (||v_i|| + ||w_i||)
    s.t. E_i X v_i >= 0, E_i X w_i >= 0.
    """
    problem = _check_problem(problem)
    _check_loss(problem, "hinge")
    d, p = problem.d, problem.n_patterns
    V, W = cp.Variable((d, p)), cp.Variable((d, p))
    D, E, X = problem.patterns.astype(float), problem.signs, problem.X
    yhat = cp.sum(cp.multiply(D, X @ (V - W)), axis=1)
    loss_term = cp.sum(cp.pos(1 - cp.multiply(problem.y, yhat)))
    penalty = cp.sum(cp.norm(V, 2, axis=0)) + cp.sum(cp.norm(W, 2, axis=0))
    constraints = [cp.multiply(E, X @ V) >= 0, cp.multiply(E, X @ W) >= 0]
    program = cp.Problem(cp.Minimize(loss_term + problem.beta * penalty), constraints)
    status, seconds = solve_timed(program, solver, options)
    return _result(program, loss_term, V, W, status, seconds, 0.0, "inf", "hinge", (d, p))
