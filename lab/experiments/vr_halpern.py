"""``vr-halpern``: variance-reduced Halpern against extragradient and EAG on finite-sum monotone problems.

Paper: Cai, Alacaoglu & Diakonikolas, "Variance Reduced Halpern Iteration for Finite-Sum Monotone Inclusions"
(arXiv 2310.02987): for F = (1/N) sum_i F_i with mean-square Lipschitz constant L, Alg. 2 reaches residual eps in
O~(N + sqrt(N) L / eps) component calls, against O(N L_F / eps) for deterministic methods (L_F the Lipschitz
constant of F, L_F <= L by Jensen). The predicted gain is the factor sqrt(N) L_F / L = 1 / ``agreement``: up to
sqrt(N) when the components agree (L ~ L_F), none when they cancel in the mean (L ~ sqrt(N) L_F or more). Steps:

1. Build the problem (:func:`build_problem`): the annotator matrix game (one Bradley-Terry annotator per
   component), the paper's bilinear QP split into row blocks, or a perturbed matrix game A_i = A + s E_i
   (A and E_i standard normal m x m, the E_i centred so that their mean is exactly A; s = ``disagreement``, 0 for
   identical components). Log at step 0 ``problem.lipschitz`` L_F, ``problem.mean_square_lipschitz`` L,
   ``problem.n_components`` N, ``problem.agreement`` L / (sqrt(N) L_F) (>= 1/sqrt(N)) and
   ``problem.initial_residual`` at the common starting point.
2. Run projected extragradient, EAG (deterministic Halpern) and VR-Halpern (Alg. 2) from the problem's initial
   point until the natural residual ||u - P(u - F(u))|| <= ``tol`` or ``max_epochs`` epochs (N oracle calls
   each). Log per iteration k (every ``log_every`` and the last) ``{m}.iteration``, ``{m}.residual``,
   ``{m}.epochs``, ``{m}.oracle_calls`` and for games ``{m}.gap``; at its last step ``{m}.converged`` and
   ``{m}.restarts``. ``restart`` restarts the anchors of EAG and VR-Halpern each time the residual has halved
   (module docstring of :mod:`theory.games.halpern`).

A resumed run skips the methods whose ``{m}.converged`` is logged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from lab.config import ConfigError, param
from lab.registry import Series, register
from lab.runs import RunLogger
from theory.games.halpern import (
    FiniteSumMatrixGame,
    annotator_matrix_game,
    bilinear_quadratic_problem,
    solve_extragradient,
    solve_halpern,
    solve_vr_halpern,
)

METHODS = ("extragradient", "halpern", "vr_halpern")
LABELS = {"extragradient": "extragradient", "halpern": "EAG (Halpern)", "vr_halpern": "VR-Halpern (Alg. 2)"}
CURVE_METRICS = ("iteration", "residual", "epochs", "oracle_calls", "gap")
RESTART_FACTOR = 0.5
MAX_STORED_NUMBERS = 50_000_000
"""Components are stored densely (N m n numbers for games, N (2n)^2 for the QP): at most 400 MB."""
MAX_ITERATIONS = 10_000_000
"""A cap the epoch budget always reaches first (every iteration costs at least one full F)."""


@dataclass(frozen=True)
class VRHalpernConfig:
    problem: Literal["annotators", "bilinear", "perturbed"] = param(
        "annotators", help="annotator matrix game, the paper's bilinear QP split by rows, or A + s E_i"
    )
    n_components: int = param(20, help="N: annotators, row blocks of the QP, or perturbed copies", ge=1, le=100_000)
    n_actions: int = param(10, help="actions per player (bilinear: n, with x, y in R^n)", ge=2, le=5000)
    disagreement: float = param(1.0, help="perturbed: size s of the centred perturbations E_i", ge=0.0, le=100.0)
    max_epochs: float = param(200.0, help="budget per method in epochs (N oracle calls each)", gt=0.0, le=1e7)
    restart: bool = param(True, help="restart the anchors of EAG and VR-Halpern when the residual halves")
    tol: float = param(1e-8, help="stop once the natural residual is below tol", ge=0.0, lt=1.0)
    log_every: int = param(1, help="iterations between logged points", ge=1, le=100_000)
    seed: int = param(0, help="seed of the annotators and of VR-Halpern's sampling", ge=0)

    def check(self) -> None:
        if self.problem == "bilinear" and self.n_components > self.n_actions:
            raise ConfigError(
                "n_components", f"the QP has n = {self.n_actions} rows to split: expected <= n, got {self.n_components}"
            )
        per_component = self.n_actions**2 * (4 if self.problem == "bilinear" else 1)
        if self.n_components * per_component > MAX_STORED_NUMBERS:
            raise ConfigError(
                "n_components",
                f"{self.n_components} dense components of {per_component} numbers exceed {MAX_STORED_NUMBERS}",
            )


def build_problem(cfg: VRHalpernConfig):
    """Step 1's problem."""
    if cfg.problem == "annotators":
        return annotator_matrix_game(cfg.n_actions, cfg.n_components, seed=cfg.seed)
    if cfg.problem == "bilinear":
        return bilinear_quadratic_problem(cfg.n_actions, cfg.n_components)
    rng = np.random.default_rng(cfg.seed)
    shape = (cfg.n_actions, cfg.n_actions)
    mean = rng.standard_normal(shape)
    perturbations = rng.standard_normal((cfg.n_components, *shape))
    return FiniteSumMatrixGame(mean + cfg.disagreement * (perturbations - perturbations.mean(axis=0)))


def solve(name: str, problem, cfg: VRHalpernConfig, callback=None):
    """Method ``name`` on ``problem`` with the config's budget, tolerance, restarts and seed."""
    common = dict(tol=cfg.tol, max_iter=MAX_ITERATIONS, max_epochs=cfg.max_epochs, callback=callback)
    restart = RESTART_FACTOR if cfg.restart else None
    if name == "extragradient":
        return solve_extragradient(problem, **common)
    if name == "halpern":
        return solve_halpern(problem, restart=restart, **common)
    return solve_vr_halpern(problem, restart=restart, seed=cfg.seed, **common)


def run_vr_halpern(cfg: VRHalpernConfig, run: RunLogger, progress) -> None:
    """Steps 1-2 of the module docstring."""
    problem = build_problem(cfg)
    n, lipschitz, mean_square = problem.n_components, problem.lipschitz, problem.mean_square_lipschitz
    run.log(
        0,
        **{
            "problem.lipschitz": lipschitz,
            "problem.mean_square_lipschitz": mean_square,
            "problem.n_components": n,
            "problem.agreement": mean_square / (math.sqrt(n) * lipschitz),
            "problem.initial_residual": problem.natural_residual(problem.initial_point()),
        },
    )
    budget = math.ceil(cfg.max_epochs)
    total = len(METHODS) * budget
    for index, name in enumerate(METHODS):
        offset = index * budget
        if not run.logged_steps(f"{name}.converged"):

            def record(state, name=name, offset=offset) -> None:
                if state.n_iter % cfg.log_every == 0:
                    run.log(state.n_iter, **_point(name, state.n_iter, state.metrics))
                progress(offset + min(int(state.metrics["epochs"]), budget), total)

            result = solve(name, problem, cfg, record)
            last = {metric: values[-1] for metric, values in result.history.items()}
            run.log(
                result.n_iter,
                **_point(name, result.n_iter, last),
                **{f"{name}.converged": float(result.converged), f"{name}.restarts": result.restarts},
            )
        progress(offset + budget, total)


def _point(name: str, iteration: int, metrics) -> dict[str, float]:
    point = {"iteration": iteration} | {key: metrics[key] for key in CURVE_METRICS[1:] if key in metrics}
    return {f"{name}.{key}": value for key, value in point.items()}


register(
    "vr-halpern",
    kind="theory",
    config=VRHalpernConfig,
    description="VR-Halpern (Alg. 2) vs extragradient and EAG: natural residual against epochs",
    series=tuple(Series(f"{name}.epochs", f"{name}.residual", LABELS[name]) for name in METHODS),
    axis_titles=("epochs (N oracle calls)", "natural residual ‖u − P(u − F(u))‖"),
    resumable=True,
    log_y=True,
)(run_vr_halpern)


@dataclass(frozen=True)
class VRHalpernResults:
    """A run read back from the store: per method its ``curves`` (CURVE_METRICS arrays; ``gap`` for games only),
    whether it ``converged``, and the problem's ``constants`` (lipschitz, mean_square_lipschitz, n_components,
    agreement, initial_residual)."""

    curves: dict[str, dict[str, np.ndarray]]
    converged: dict[str, bool]
    constants: dict[str, float]


def load_results(metrics: pd.DataFrame) -> VRHalpernResults:
    """Parse one run's long-format metrics (``store.metrics(run_id)``) for :mod:`lab.games_views`."""
    by_name = {name: frame.sort_values("step")["value"].to_numpy(float) for name, frame in metrics.groupby("name")}
    curves = {
        name: {key: by_name[f"{name}.{key}"] for key in CURVE_METRICS if f"{name}.{key}" in by_name}
        for name in METHODS
        if f"{name}.residual" in by_name
    }
    converged = {name: bool(by_name[f"{name}.converged"][-1]) for name in METHODS if f"{name}.converged" in by_name}
    constants = {key.removeprefix("problem."): float(v[0]) for key, v in by_name.items() if key.startswith("problem.")}
    return VRHalpernResults(curves=curves, converged=converged, constants=constants)
