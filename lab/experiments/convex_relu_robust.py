"""``convex-relu-robust``: convex adversarial training against the standard convex solution, under PGD.

Paper: Bai, Gautam & Sojoudi, arXiv 2201.01965, section 4. On the moons set (train and test splits):

1. solve the standard convex hinge program once, and for each eps on a grid the robust program
   (:func:`theory.convex_relu.adversarial.solve_robust_cvxpy`: patterns held on every eps-ball, the
   dual norm of the attack, bias column unperturbed);
2. attack both recovered networks with PGD at that eps (torch) and log clean and robust accuracy on
   the training and test points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lab.config import param
from lab.convex_relu_torch import accuracy, robust_accuracy
from lab.datasets import load_dataset
from lab.registry import Series, register
from lab.runs import RunLogger
from theory.convex_relu.adversarial import solve_robust_cvxpy, solve_standard_hinge_cvxpy
from theory.convex_relu.problem import make_problem, recover_network, with_bias


@dataclass(frozen=True)
class ConvexReLURobustConfig:
    n: int = param(100, help="training points (as many test points)", ge=10, le=2000)
    beta: float = param(1e-3, help="weight decay beta", gt=0.0, le=10.0, log=True)
    n_gates: int = param(40, help="sampled gates (patterns after deduplication)", ge=1, le=2000)
    max_eps: float = param(0.3, help="largest attack radius", gt=0.0, le=2.0)
    n_eps: int = param(4, help="attack radii on the grid (0, max_eps]", ge=1, le=50)
    norm: Literal["inf", "2"] = param("inf", help="attack norm (the program uses its dual norm)")
    pgd_steps: int = param(50, help="PGD steps per restart", ge=1, le=10_000)
    pgd_restarts: int = param(3, help="PGD restarts (the first from the clean point)", ge=1, le=100)
    seed: int = param(0, help="seed of the data, gates and attacks", ge=0)


def run_convex_relu_robust(cfg: ConvexReLURobustConfig, run: RunLogger, progress) -> None:
    """Steps 1-2 of the module docstring; each eps is one step."""
    X, y, _ = load_dataset("moons", n=2 * cfg.n, seed=cfg.seed)
    split = np.random.default_rng(cfg.seed).permutation(2 * cfg.n)
    train, test = split[: cfg.n], split[cfg.n :]
    problem = make_problem(X[train], y[train], cfg.beta, cfg.n_gates, seed=cfg.seed)
    X_test, y_test = with_bias(X[test]), y[test]
    standard = solve_standard_hinge_cvxpy(problem)
    standard_net = recover_network(problem, standard.V, standard.W)
    attack = dict(norm=cfg.norm, steps=cfg.pgd_steps, restarts=cfg.pgd_restarts, seed=cfg.seed)
    grid = np.linspace(cfg.max_eps / cfg.n_eps, cfg.max_eps, cfg.n_eps)
    done = run.logged_steps("robust.pgd_test")
    for step, eps in enumerate(grid):
        if step not in done:
            robust = solve_robust_cvxpy(problem, eps, norm=cfg.norm)
            robust_net = recover_network(problem, robust.V, robust.W)
            metrics = {"eps": eps, "robust.status_optimal": float(robust.status == "optimal")}
            for name, net in (("standard", standard_net), ("robust", robust_net)):
                metrics[f"{name}.clean_test"] = accuracy(net, X_test, y_test)
                metrics[f"{name}.pgd_train"] = robust_accuracy(net, problem.X, problem.y, eps, **attack)
                metrics[f"{name}.pgd_test"] = robust_accuracy(net, X_test, y_test, eps, **attack)
                metrics[f"{name}.width"] = net.width
            run.log(step, **metrics)
        progress(step + 1, len(grid))


register(
    "convex-relu-robust",
    kind="theory",
    config=ConvexReLURobustConfig,
    description="convex adversarial training vs the standard convex ReLU solution: accuracy under PGD",
    series=(
        Series("eps", "standard.pgd_test", "standard convex: PGD test accuracy", mode="lines+markers"),
        Series("eps", "robust.pgd_test", "robust convex: PGD test accuracy", mode="lines+markers"),
        Series("eps", "standard.clean_test", "standard convex: clean test accuracy", mode="lines"),
        Series("eps", "robust.clean_test", "robust convex: clean test accuracy", mode="lines"),
    ),
    axis_titles=("attack radius ε", "accuracy"),
    resumable=True,
)(run_convex_relu_robust)
