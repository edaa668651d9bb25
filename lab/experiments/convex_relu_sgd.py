"""``convex-relu-sgd``: the non-convex network trained by SGD/Adam against the convex global optimum.

Paper: Bai, Gautam & Sojoudi, "Efficient Global Optimization of Two-layer ReLU Networks" (arXiv
2201.01965), after Pilanci & Ergen. On planar data (the moons set) every activation pattern can be
listed (:func:`theory.convex_relu.problem.complete_planar_patterns`), so the convex program's optimum
*is* the global optimum of 1/2 ||sum_j (X u_j)_+ alpha_j - y||^2 + beta/2 sum_j (||u_j||^2 + alpha_j^2),
certified by its dual lower bound. The experiment:

1. solves the convex program over all patterns (cvxpy + Clarabel) and certifies it;
2. trains the same objective with torch (full batch, ``n_seeds`` seeds, same data and scaling);
3. logs, per epoch, the best / mean / worst non-convex objective next to the global optimum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lab.config import param
from lab.convex_relu_torch import train_nonconvex
from lab.datasets import load_dataset
from lab.registry import Series, register
from lab.runs import RunLogger
from theory.convex_relu.problem import ConvexReLUProblem, certify, complete_planar_patterns, with_bias
from theory.convex_relu.reference import solve_cvxpy

LOGGED_POINTS = 200


@dataclass(frozen=True)
class ConvexReLUSGDConfig:
    n: int = param(30, help="moons points (all n^2 - n + 1 patterns are used)", ge=4, le=60)
    beta: float = param(0.01, help="weight decay beta", gt=0.0, le=10.0, log=True)
    width: int = param(50, help="hidden neurons of the trained network", ge=1, le=2000)
    optimizer: Literal["adam", "sgd"] = param("adam", help="torch optimizer (sgd: plain full-batch gradient descent)")
    lr: float = param(0.01, help="learning rate", gt=0.0, le=1.0, log=True)
    epochs: int = param(3000, help="full-batch steps per seed", ge=10, le=200_000)
    n_seeds: int = param(3, help="training seeds", ge=1, le=50)
    seed: int = param(0, help="seed of the data and of the first training seed", ge=0)


def global_problem(cfg: ConvexReLUSGDConfig) -> ConvexReLUProblem:
    """The moons data with its bias column and every pattern."""
    X, y, _ = load_dataset("moons", n=cfg.n, seed=cfg.seed)
    features = with_bias(X)
    patterns, gates = complete_planar_patterns(features)
    return ConvexReLUProblem(features, y, cfg.beta, patterns, gates)


def run_convex_relu_sgd(cfg: ConvexReLUSGDConfig, run: RunLogger, progress) -> None:
    """Steps 1-3 of the module docstring."""
    problem = global_problem(cfg)
    reference = solve_cvxpy(problem)
    certificate = certify(problem, reference.V, reference.W)
    progress(1, cfg.n_seeds + 1)
    curves = []
    for k in range(cfg.n_seeds):
        training = train_nonconvex(
            problem, cfg.width, optimizer=cfg.optimizer, lr=cfg.lr, epochs=cfg.epochs, seed=cfg.seed + k
        )
        curves.append(training.objective)
        progress(k + 2, cfg.n_seeds + 1)
    curves = np.array(curves)
    epochs = np.unique(np.linspace(0, cfg.epochs, LOGGED_POINTS).astype(int))
    rows = []
    for epoch in epochs:
        values = curves[:, epoch]
        rows += [
            (int(epoch), "epoch", epoch),
            (int(epoch), "nonconvex.best", values.min()),
            (int(epoch), "nonconvex.mean", values.mean()),
            (int(epoch), "nonconvex.worst", values.max()),
            (int(epoch), "convex.optimum", certificate.objective),
            (int(epoch), "convex.lower_bound", certificate.lower_bound),
        ]
    final = curves[:, -1]
    rows += [
        (cfg.epochs, "final.relative_gap_best", (final.min() - certificate.objective) / certificate.objective),
        (cfg.epochs, "final.relative_gap_worst", (final.max() - certificate.objective) / certificate.objective),
        (cfg.epochs, "convex.width", certificate.width),
        (cfg.epochs, "convex.n_patterns", problem.n_patterns),
    ]
    run.log_rows(rows)


register(
    "convex-relu-sgd",
    kind="theory",
    config=ConvexReLUSGDConfig,
    description="SGD/Adam on the two-layer ReLU objective against its certified convex global optimum",
    series=(
        Series("epoch", "nonconvex.best", "non-convex, best seed"),
        Series("epoch", "nonconvex.mean", "non-convex, mean over seeds"),
        Series("epoch", "nonconvex.worst", "non-convex, worst seed"),
        Series("epoch", "convex.optimum", "convex global optimum"),
    ),
    axis_titles=("epoch", "objective 1/2‖f(X) − y‖² + β/2 Σ(‖u‖² + α²)"),
    log_y=True,
)(run_convex_relu_sgd)
