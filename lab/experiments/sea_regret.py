"""``sea-regret``: regret of optimistic OMD against OMD, OGD and FTRL across the stochastic / adversarial grid.

Paper: Chen, Zhang, Tu, Zhao & Zhang, "Optimistic Online Mirror Descent for Bridging Stochastic and Adversarial
Online Convex Optimization" (arXiv 2302.04552): in the SEA model, OOMD's expected regret on convex smooth losses is
O(sqrt(sigma^2_{1:T}) + sqrt(Sigma^2_{1:T})), the stochastic variance plus the adversarial variation. Steps:

1. For every cell (noise sigma, drift) of the grid, build the environment (:func:`build_environment`): quadratic
   losses on the unit ball, or linear losses on the simplex, whose mean switches between two values every
   ``period`` rounds (amplitude ``drift``), plus noise of size ``sigma``.
2. For every seed k (``seed + k``), play T rounds with OOMD, OMD (same adaptive step, no optimism), anytime OGD and
   anytime FTRL (:func:`theory.games.sea.run_online`, the same loss sequence for the four). Each (cell, seed) is
   one point, step p = cell * n_seeds + k: ``point.cell``, ``point.noise``, ``point.drift``, ``point.seed``,
   ``point.sigma_sq_total``, ``point.variation_total``, ``point.bound_scale`` = sqrt(sigma^2_{1:T}) +
   sqrt(Sigma^2_{1:T}) and ``{learner}.final_regret``.
3. Per cell and learner, the regret curve averaged over the seeds, ``{learner}.regret.c{cell}``, at rounds
   t = log_every, 2 log_every, ..., T (steps t; ``round`` = t at the same steps).

A resumed run skips the cells whose last point is logged; a cell stopped half-way is played again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from lab.config import ConfigError, param
from lab.registry import Series, register
from lab.runs import RunLogger
from theory.games.sea import (
    FollowTheRegularizedLeader,
    OnlineGradientDescent,
    OnlineMirrorDescent,
    OptimisticOMD,
    SEALinearSimplexEnvironment,
    SEAQuadraticEnvironment,
    run_online,
)

LEARNERS = {
    "oomd": OptimisticOMD,
    "omd": OnlineMirrorDescent,
    "ogd": OnlineGradientDescent,
    "ftrl": FollowTheRegularizedLeader,
}
LABELS = {
    "oomd": "optimistic OMD",
    "omd": "OMD (no optimism)",
    "ogd": "OGD, step D/(G√t)",
    "ftrl": "FTRL, step D/(G√t)",
}
POINT_METRICS = ("cell", "noise", "drift", "seed", "sigma_sq_total", "variation_total", "bound_scale")


def parse_levels(text: str, field: str) -> tuple[float, ...]:
    """Comma-separated non-negative finite numbers, e.g. "0, 0.5, 1"; ConfigError naming ``field`` otherwise."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(field, f"expected comma-separated numbers such as '0, 0.5, 1', got {text!r}") from None
    if not all(np.isfinite(value) and value >= 0 for value in values):
        raise ConfigError(field, f"expected non-negative finite numbers, got {text!r}")
    return values


@dataclass(frozen=True)
class SEARegretConfig:
    domain: Literal["ball", "simplex"] = param(
        "ball", help="quadratic losses on the unit ball, or linear losses on the probability simplex"
    )
    dim: int = param(5, help="dimension d", ge=2, le=10_000)
    horizon: int = param(2000, help="T: rounds", ge=2, le=1_000_000)
    noises: str = param("0, 0.5, 1, 2", help="grid of noise levels sigma, comma-separated")
    drifts: str = param("0, 0.2, 0.6", help="grid of drift amplitudes of the switching mean, comma-separated")
    period: int = param(1, help="rounds between switches of the mean (1: every round)", ge=1, le=1_000_000)
    center: float = param(
        0.2, help="ball: every coordinate of the mean target (simplex: linspace(0, 1, d))", ge=-10.0, le=10.0
    )
    n_seeds: int = param(2, help="loss sequences per cell", ge=1, le=100)
    seed: int = param(0, help="first seed of the loss sequences", ge=0)
    log_every: int = param(20, help="rounds between logged points of the regret curves", ge=1, le=1_000_000)

    def check(self) -> None:
        parse_levels(self.noises, "noises")
        parse_levels(self.drifts, "drifts")
        if self.log_every > self.horizon:
            raise ConfigError("log_every", f"expected at most the horizon {self.horizon}, got {self.log_every}")

    @property
    def grid(self) -> list[tuple[float, float]]:
        """The cells (noise, drift), noise-major."""
        return [(n, d) for n in parse_levels(self.noises, "noises") for d in parse_levels(self.drifts, "drifts")]


def build_environment(cfg: SEARegretConfig, noise: float, drift: float):
    if cfg.domain == "ball":
        center = np.full(cfg.dim, cfg.center)
        return SEAQuadraticEnvironment(dim=cfg.dim, noise=noise, drift=drift, period=cfg.period, center=center)
    return SEALinearSimplexEnvironment(dim=cfg.dim, noise=noise, drift=drift, period=cfg.period)


def make_learner(name: str, environment):
    """A fresh learner with the environment's gradient bound G (OGD, FTRL: the anytime step D / (G sqrt t))."""
    return LEARNERS[name](environment.domain, gradient_bound=environment.gradient_bound)


def run_sea_regret(cfg: SEARegretConfig, run: RunLogger, progress) -> None:
    """Steps 1-3 of the module docstring."""
    grid = cfg.grid
    total = len(grid) * cfg.n_seeds * len(LEARNERS)
    rounds = np.arange(cfg.log_every, cfg.horizon + 1, cfg.log_every)
    finished = run.logged_steps(f"{list(LEARNERS)[-1]}.final_regret")
    played = 0
    for cell, (noise, drift) in enumerate(grid):
        if (cell + 1) * cfg.n_seeds - 1 in finished:
            played += cfg.n_seeds * len(LEARNERS)
            progress(played, total)
            continue
        environment = build_environment(cfg, noise, drift)
        curves = {name: np.zeros(rounds.size) for name in LEARNERS}
        points = []
        for k in range(cfg.n_seeds):
            point = {"point.cell": cell, "point.noise": noise, "point.drift": drift, "point.seed": cfg.seed + k}
            for name in LEARNERS:
                result = run_online(make_learner(name, environment), environment, cfg.horizon, seed=cfg.seed + k)
                curves[name] += result.regret[rounds - 1] / cfg.n_seeds
                point[f"{name}.final_regret"] = result.final_regret
                played += 1
                progress(played, total)
            point |= {
                "point.sigma_sq_total": result.sigma_sq_total,
                "point.variation_total": result.variation_total,
                "point.bound_scale": result.bound_scale,
            }
            points.append(point)
        run.log_rows(
            (int(t), name, value)
            for i, t in enumerate(rounds)
            for name, value in {"round": t, **{f"{n}.regret.c{cell}": c[i] for n, c in curves.items()}}.items()
        )
        for k, point in enumerate(points):  # the cell's last point goes last: it marks the cell done
            run.log(cell * cfg.n_seeds + k, **point)


register(
    "sea-regret",
    kind="theory",
    config=SEARegretConfig,
    description="optimistic OMD vs OMD, OGD and FTRL: final regret against sqrt(sigma^2_1:T) + sqrt(Sigma^2_1:T)",
    series=tuple(
        Series("point.bound_scale", f"{name}.final_regret", label, "markers") for name, label in LABELS.items()
    ),
    axis_titles=("√σ²₁:T + √Σ²₁:T", "final regret R_T"),
    resumable=True,
)(run_sea_regret)


@dataclass(frozen=True)
class SEARegretResults:
    """A run read back from the store: ``points`` (one row per cell and seed: POINT_METRICS and each learner's
    ``final_regret``), the curves' ``rounds`` and per cell the seed-mean ``curves[cell][learner]``."""

    points: pd.DataFrame
    rounds: np.ndarray
    curves: dict[int, dict[str, np.ndarray]]


def load_results(metrics: pd.DataFrame) -> SEARegretResults:
    """Parse one run's long-format metrics (``store.metrics(run_id)``) for :mod:`lab.games_views`."""
    wide = metrics.pivot_table(index="step", columns="name", values="value", aggfunc="last", dropna=False)
    point_columns = [f"point.{m}" for m in POINT_METRICS] + [f"{n}.final_regret" for n in LEARNERS]
    points = wide[point_columns].dropna(subset=[f"{n}.final_regret" for n in LEARNERS])
    points.columns = [column.removeprefix("point.") for column in point_columns]
    points = points.astype({"cell": int, "seed": int})
    curve_rows = wide[wide["round"].notna()]
    curves = {
        int(cell): {name: curve_rows[f"{name}.regret.c{cell}"].to_numpy(float) for name in LEARNERS}
        for cell in points["cell"].unique()
    }
    return SEARegretResults(
        points=points.reset_index(drop=True), rounds=curve_rows["round"].to_numpy(float), curves=curves
    )
