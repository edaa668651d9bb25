"""``convex-relu``: global training of a two-layer ReLU network by ADMM on its convex program, live.

Paper: Bai, Gautam & Sojoudi, arXiv 2201.01965 (Algorithm 3.1). Steps:

1. Load a dataset (bundled or synthetic), sample ``n_gates`` gates and build the convex program.
2. Optionally solve it with cvxpy + Clarabel first, so the objective gap can be drawn while ADMM runs.
3. Run :func:`theory.convex_relu.admm.solve_admm`, logging residuals, rho, objective, violation and the
   gap every ``log_every`` iterations; then log the certificate of the final point (duality gap,
   violation, recovered network's objective, width, pattern mismatches) and both wall times.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from lab.config import param
from lab.datasets import load_dataset
from lab.registry import Series, register
from lab.runs import RunLogger
from theory.convex_relu.admm import solve_admm
from theory.convex_relu.problem import make_problem
from theory.convex_relu.reference import solve_cvxpy


@dataclass(frozen=True)
class ConvexReLUConfig:
    dataset: Literal["breast_cancer", "digits", "diabetes", "moons", "planted_relu"] = param(
        "breast_cancer", help="data: sklearn's bundled sets or a synthetic one"
    )
    n: int = param(0, help="points (0: the whole bundled set, 200 for synthetic ones)", ge=0, le=1_000_000)
    n_gates: int = param(50, help="sampled gates P (patterns after deduplication)", ge=1, le=5000)
    beta: float = param(1.0, help="weight decay beta", gt=0.0, le=1e4, log=True)
    rho: float = param(0.0, help="initial ADMM penalty (0: automatic)", ge=0.0, le=1e6)
    tol: float = param(1e-6, help="relative tolerance (residuals, or certified gap after polish)", gt=0.0, lt=1.0)
    max_iter: int = param(5000, help="iteration cap", ge=1, le=1_000_000)
    reference: bool = param(True, help="solve with cvxpy + Clarabel first to draw the objective gap")
    log_every: int = param(10, help="iterations between logged points", ge=1, le=10_000)
    seed: int = param(0, help="seed of the gates (and of subsampling)", ge=0)


def run_convex_relu(cfg: ConvexReLUConfig, run: RunLogger, progress) -> None:
    """Steps 1-3 of the module docstring."""
    X, y, _ = load_dataset(cfg.dataset, n=cfg.n or None, seed=cfg.seed)
    problem = make_problem(X, y, cfg.beta, cfg.n_gates, seed=cfg.seed)
    optimum = None
    if cfg.reference:
        reference = solve_cvxpy(problem)
        optimum = reference.objective
        run.log(0, **{"reference.objective": optimum, "reference.seconds": reference.seconds})

    def record(state) -> None:
        metrics = {"iteration": state.n_iter, **state.metrics}
        if optimum is not None and "objective" in state.metrics:
            metrics["objective_gap"] = abs(state.metrics["objective"] - optimum) / abs(optimum)
        run.log(state.n_iter, **metrics)
        progress(state.n_iter, cfg.max_iter)

    start = time.perf_counter()
    result = solve_admm(
        problem, rho=cfg.rho or None, tol=cfg.tol, max_iter=cfg.max_iter, callback=record,
        callback_every=cfg.log_every, metrics_every=cfg.log_every,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    certificate = result.certificate
    final = {
        "final.objective": certificate.objective,
        "final.relative_gap": certificate.relative_gap,
        "final.relative_violation": certificate.relative_violation,
        "final.network_objective": certificate.network_objective,
        "final.width": certificate.width,
        "final.pattern_mismatches": certificate.pattern_mismatches,
        "final.converged": float(result.converged),
        "final.polished": float(result.polished),
        "admm.seconds": seconds,
        "n_patterns": problem.n_patterns,
    }
    if optimum is not None:
        final["final.objective_gap"] = (certificate.objective - optimum) / abs(optimum)
    run.log(result.n_iter, **final)


register(
    "convex-relu",
    kind="theory",
    config=ConvexReLUConfig,
    description="global training of a two-layer ReLU network: ADMM on the convex program, with certificates",
    series=(
        Series("iteration", "primal_residual", "primal residual"),
        Series("iteration", "dual_residual", "dual residual"),
        Series("iteration", "objective_gap", "|objective − cvxpy optimum| / optimum", mode="lines+markers"),
        Series("iteration", "constraint_violation", "relative cone violation", mode="lines+markers"),
    ),
    axis_titles=("ADMM iteration", "residual / gap (log)"),
    log_y=True,
)(run_convex_relu)
