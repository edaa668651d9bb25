"""Reference solutions by cvxpy (Clarabel): the exact convex program, and the gated-ReLU relaxation.

The gated relaxation drops the cone constraints E_i X u_i >= 0 (Mishkin, Sahiner & Pilanci, "Fast
Convex Optimization for Two-Layer ReLU Networks", ICML 2022). Its optimum is a *lower* value that no
ReLU network need attain: it is labelled as a relaxation and never reported as a ReLU global optimum.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from theory.convex_relu.problem import ConvexReLUProblem


@dataclass(frozen=True)
class ReferenceSolution:
    """cvxpy's solution: V, W (d x P; W is zero for the relaxation), its objective, status and time."""

    V: np.ndarray
    W: np.ndarray
    objective: float
    status: str
    seconds: float
    relaxation: bool


def solve_timed(program: cp.Problem, solver: str, options: dict) -> tuple[str, float]:
    """Solve ``program``; a solver failure becomes a status string (failure is data). Returns (status, seconds)."""
    start = time.perf_counter()
    try:
        program.solve(solver=solver, **options)
    except cp.error.SolverError as error:
        return f"solver error: {error}", time.perf_counter() - start
    return str(program.status), time.perf_counter() - start


def solve_cvxpy(problem: ConvexReLUProblem, *, solver: str = "CLARABEL", **options) -> ReferenceSolution:
    """The exact convex program (module :mod:`theory.convex_relu.problem`, step 3)."""
    if not isinstance(problem, ConvexReLUProblem):
        raise TypeError(f"problem: expected a ConvexReLUProblem, got {type(problem).__name__}")
    d, p = problem.d, problem.n_patterns
    V, W = cp.Variable((d, p)), cp.Variable((d, p))
    D, E, X = problem.patterns.astype(float), problem.signs, problem.X
    prediction = cp.sum(cp.multiply(D, X @ (V - W)), axis=1)
    penalty = cp.sum(cp.norm(V, 2, axis=0)) + cp.sum(cp.norm(W, 2, axis=0))
    objective = 0.5 * cp.sum_squares(prediction - problem.y) + problem.beta * penalty
    program = cp.Problem(cp.Minimize(objective), [cp.multiply(E, X @ V) >= 0, cp.multiply(E, X @ W) >= 0])
    status, seconds = solve_timed(program, solver, options)
    if V.value is None:
        nan = np.full((d, p), np.nan)
        return ReferenceSolution(nan, nan, np.nan, status, seconds, relaxation=False)
    return ReferenceSolution(V.value, W.value, float(program.value), status, seconds, relaxation=False)


def solve_gated_relaxation(problem: ConvexReLUProblem, *, solver: str = "CLARABEL", **options) -> ReferenceSolution:
    """min 1/2 ||sum_i D_i X u_i - y||^2 + beta sum_i ||u_i||.

    A RELAXATION (no cone constraints): its optimum lies below the ReLU optimum.
    """
    if not isinstance(problem, ConvexReLUProblem):
        raise TypeError(f"problem: expected a ConvexReLUProblem, got {type(problem).__name__}")
    d, p = problem.d, problem.n_patterns
    U = cp.Variable((d, p))
    prediction = cp.sum(cp.multiply(problem.patterns.astype(float), problem.X @ U), axis=1)
    objective = 0.5 * cp.sum_squares(prediction - problem.y) + problem.beta * cp.sum(cp.norm(U, 2, axis=0))
    program = cp.Problem(cp.Minimize(objective))
    status, seconds = solve_timed(program, solver, options)
    value = U.value if U.value is not None else np.full((d, p), np.nan)
    return ReferenceSolution(value, np.zeros((d, p)), float(program.value or np.nan), status, seconds, relaxation=True)
