"""``submodular-rl``: SubPO against modular policy gradient and a uniform random policy on grid worlds.

Paper: Prajapat, Mutny, Zeilinger, Krause, "Submodular Reinforcement Learning" (ICLR 2024, arXiv 2307.13372).
Claim: SubPO, REINFORCE on the marginal gains F(s_{i+1} | tau_{0:i}) (the reward-to-go F(tau) - F(tau_{0:i})),
greedily maximises marginal gains; modular PG, on r(s) = F({s}) with repeats counted, parks on high-weight cells.

1. Build the instance from the config (:func:`build_mdp`): a grid (or the two-rooms layout), the objective,
   the start cell and H cells per trajectory.
2. For seeds s = seed, ..., seed + n_seeds - 1 and every chosen method, step the solvers in lockstep; log per
   iteration t the batch mean F(tau) of each (method, seed) (``{method}.seed{k}.mean_F``) and its mean over
   seeds (``{method}.mean_F``), with the references ``ceiling`` (when there is an analytic one) and
   ``greedy_path.F`` (the greedy oracle, :func:`theory.submodular.greedy_path`). The uniform random policy
   draws a fresh batch each iteration and never learns.
3. Evaluate every final policy on ``n_eval`` fresh rollouts (:func:`theory.submodular.evaluate_policy`) and log
   ``{method}.final_mean_F`` +- ``{method}.final_stderr`` (averaged over seeds) and ``{method}.greedy_F``; log its
   expected visits per episode of every cell, ``{method}.visits`` at step = cell index (they sum to H), next to
   the cell maps ``cell.weight``, ``cell.modular_reward`` (r(s) = F({s})) and ``cell.wall``.

Seeds: seed s splits as SeedSequence(s).spawn(3) = (training, evaluation, visits); training and evaluation are
the split :func:`theory.submodular.solve_subpo` makes, so each logged tabular run is theory's run on seed s.
Not resumable: the solvers' state is not stored (a stopped run keeps its curves).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from lab.config import ConfigError, param
from lab.registry import Series, register
from lab.runs import RunLogger
from lab.submodular_torch import MLPPolicyGradient
from theory.submodular import (
    Coverage,
    ExperimentDesign,
    GridWorld,
    ItemCollection,
    PolicyGradient,
    SetFunction,
    SubmodularMDP,
    evaluate_policy,
    greedy_path,
    grid_coverage,
    grid_experiment_design,
    random_items,
    rollout,
    two_rooms,
)

METHODS = ("subpo", "myopic", "modular", "random", "mlp")
LABELS = {
    "subpo": "SubPO",
    "myopic": "SubPO, myopic gain",
    "modular": "modular PG",
    "random": "uniform random",
    "mlp": "SubPO, torch MLP",
}
SIGNALS = {"subpo": "reward_to_go", "myopic": "myopic", "modular": "modular"}
MIN_ITEM_CELLS = 18
"""random_items places up to 18 items of one type on distinct cells."""


@dataclass(frozen=True)
class SubmodularRLConfig:
    objective: Literal["coverage", "item_collection", "experiment_design", "two_rooms"] = param(
        "coverage", help="F: weighted coverage, item collection, D-optimal design, or coverage of two rooms"
    )
    weights: Literal["constant", "bimodal", "gp"] = param("constant", help="coverage weights w (coverage only)")
    rows: int = param(12, help="grid rows (two_rooms: the paper's 7 x 14 layout)", ge=2, le=30)
    cols: int = param(12, help="grid columns (two_rooms: the paper's 7 x 14 layout)", ge=2, le=30)
    start_row: int = param(2, help="start cell row (2, 4 is free in every layout)", ge=0)
    start_col: int = param(4, help="start cell column", ge=0)
    horizon: int = param(30, help="H: cells per trajectory (H - 1 moves)", ge=2, le=200)
    footprint: int = param(2, help="coverage: each visited cell covers a footprint x footprint block", ge=1, le=5)
    batch_size: int = param(256, help="B: trajectories per policy-gradient batch", ge=2, le=4096)
    iterations: int = param(300, help="policy-gradient iterations", ge=1, le=5000)
    learning_rate: float = param(0.1, help="Adam step of the tabular policies", gt=0.0, le=10.0, log=True)
    subpo: bool = param(True, help="run SubPO (reward-to-go of marginal gains)")
    myopic: bool = param(True, help="run myopic SubPO (immediate marginal gain only)")
    modular: bool = param(True, help="run modular PG (r(s) = F({s}), repeats counted)")
    random: bool = param(True, help="run the uniform random policy")
    mlp: bool = param(False, help="run SubPO with the torch MLP policy")
    mlp_width: int = param(64, help="MLP hidden width (one tanh layer)", ge=1, le=1024)
    mlp_learning_rate: float = param(0.01, help="Adam step of the MLP", gt=0.0, le=1.0, log=True)
    n_eval: int = param(1000, help="fresh rollouts to evaluate each final policy", ge=2, le=100_000)
    n_seeds: int = param(3, help="training seeds per method", ge=1, le=50)
    seed: int = param(0, help="first training seed", ge=0)
    instance_seed: int = param(0, help="seed of the GP weights and the item positions", ge=0)

    def check(self) -> None:
        if not any(getattr(self, method) for method in METHODS):
            raise ConfigError("subpo", "expected at least one method to run")
        if self.objective == "item_collection" and self.rows * self.cols < MIN_ITEM_CELLS:
            raise ConfigError(
                "rows", f"item collection needs at least {MIN_ITEM_CELLS} cells, got {self.rows}x{self.cols}"
            )
        grid = build_grid(self)
        if not (self.start_row < grid.rows and self.start_col < grid.cols):
            raise ConfigError("start_row", f"expected a cell of the {grid.rows}x{grid.cols} grid, got {self.start}")
        if grid.walls[self.start]:
            raise ConfigError("start_row", f"cell {self.start} is a wall")

    @property
    def start(self) -> tuple[int, int]:
        return self.start_row, self.start_col

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(method for method in METHODS if getattr(self, method))


def build_grid(cfg: SubmodularRLConfig) -> GridWorld:
    return two_rooms() if cfg.objective == "two_rooms" else GridWorld(cfg.rows, cfg.cols)


def build_objective(cfg: SubmodularRLConfig, grid: GridWorld) -> SetFunction:
    if cfg.objective == "coverage":
        return grid_coverage(grid, footprint=cfg.footprint, weights=cfg.weights, seed=cfg.instance_seed)
    if cfg.objective == "two_rooms":
        return grid_coverage(grid, footprint=cfg.footprint, weights="constant")
    if cfg.objective == "item_collection":
        return random_items(grid, seed=cfg.instance_seed)
    return grid_experiment_design(grid)


def build_mdp(cfg: SubmodularRLConfig) -> tuple[GridWorld, SubmodularMDP]:
    """Step 1: the grid and the submodular MDP of the config."""
    grid = build_grid(cfg)
    objective = build_objective(cfg, grid)
    return grid, SubmodularMDP(grid.next_state, objective, grid.state(*cfg.start), cfg.horizon)


def ceiling(cfg: SubmodularRLConfig, grid: GridWorld, objective: SetFunction) -> float | None:
    """An analytic upper bound on F(tau), or None. Constant coverage: the start covers at most f^2 cells and each
    move at most f new ones, so F <= min(f^2 + f (H - 1), free cells) (2 (H + 1) for f = 2). Items:
    sum_k min(|I_k|, D_k)."""
    if isinstance(objective, ItemCollection):
        return float(objective.max_value)
    if cfg.objective == "two_rooms" or (cfg.objective == "coverage" and cfg.weights == "constant"):
        f = cfg.footprint
        return float(min(f * f + f * (cfg.horizon - 1), grid.free.sum()))
    return None


def weight_map(objective: Coverage | ItemCollection | ExperimentDesign) -> np.ndarray:
    """What each cell is worth to F: coverage weights w, the number of item types on a cell, or the GP prior
    variance K_ss of experiment design."""
    if isinstance(objective, Coverage):
        return objective.weights
    if isinstance(objective, ItemCollection):
        return objective.membership.sum(axis=0).astype(float)
    return np.diag(objective.covariance).copy()


class UniformPolicy:
    """The uniform random policy as a stepped method that never learns: each step draws a fresh batch."""

    def __init__(self, mdp: SubmodularMDP, batch_size: int, seed: np.random.Generator) -> None:
        self.mdp, self.batch_size, self._rng = mdp, batch_size, seed
        self.logits = np.zeros(mdp.logits_shape)

    def step(self) -> dict[str, float]:
        return {"mean_objective": float(rollout(self.mdp, self.logits, self.batch_size, self._rng).values.mean())}


def make_solver(method: str, mdp: SubmodularMDP, cfg: SubmodularRLConfig, seed: np.random.SeedSequence):
    """The stepped solver of ``method`` on ``mdp``, its samples drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    if method == "random":
        return UniformPolicy(mdp, cfg.batch_size, rng)
    if method == "mlp":
        return MLPPolicyGradient(
            mdp, hidden=(cfg.mlp_width,), batch_size=cfg.batch_size, learning_rate=cfg.mlp_learning_rate, seed=rng
        )
    return PolicyGradient(
        mdp, signal=SIGNALS[method], batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, seed=rng
    )


def expected_visits(mdp: SubmodularMDP, logits: np.ndarray, n_samples: int, seed) -> np.ndarray:
    """E[number of visits of each cell per trajectory] of the softmax policy of ``logits`` (sums to H)."""
    states = rollout(mdp, logits, n_samples, np.random.default_rng(seed)).states
    return np.bincount(states.ravel(), minlength=mdp.n_states) / n_samples


def run_submodular_rl(cfg: SubmodularRLConfig, run: RunLogger, progress) -> None:
    """Steps 1-3 of the module docstring."""
    grid, mdp = build_mdp(cfg)
    bound = ceiling(cfg, grid, mdp.objective)
    greedy_value = float(greedy_path(mdp).values[0])
    seeds = [np.random.SeedSequence(cfg.seed + k).spawn(3) for k in range(cfg.n_seeds)]
    solvers = {method: [make_solver(method, mdp, cfg, train) for train, _, _ in seeds] for method in cfg.methods}
    run.log_rows(
        (cell, name, value)
        for name, values in (
            ("cell.weight", weight_map(mdp.objective)),
            ("cell.modular_reward", mdp.objective.singleton_values()),
            ("cell.wall", grid.walls.reshape(-1)),
        )
        for cell, value in enumerate(values)
    )
    run.log(0, **{"grid.rows": grid.rows, "grid.cols": grid.cols})
    for t in range(1, cfg.iterations + 1):
        metrics = {"iteration": t, "greedy_path.F": greedy_value}
        if bound is not None:
            metrics["ceiling"] = bound
        for method, group in solvers.items():
            values = [solver.step()["mean_objective"] for solver in group]
            metrics |= {f"{method}.seed{k}.mean_F": value for k, value in enumerate(values)}
            metrics[f"{method}.mean_F"] = float(np.mean(values))
        run.log(t, **metrics)
        progress(t, cfg.iterations + 1)
    final = {}
    for method, group in solvers.items():
        evaluations = [
            evaluate_policy(mdp, solver.logits, n_samples=cfg.n_eval, seed=np.random.default_rng(evaluation))
            for solver, (_, evaluation, _) in zip(group, seeds, strict=True)
        ]
        final[f"{method}.final_mean_F"] = np.mean([e.mean for e in evaluations])
        final[f"{method}.final_stderr"] = np.sqrt(np.sum([e.stderr**2 for e in evaluations])) / len(evaluations)
        final[f"{method}.greedy_F"] = np.mean([e.greedy_value for e in evaluations])
        visits = np.mean(
            [
                expected_visits(mdp, solver.logits, cfg.n_eval, visit_seed)
                for solver, (_, _, visit_seed) in zip(group, seeds, strict=True)
            ],
            axis=0,
        )
        run.log_rows((cell, f"{method}.visits", value) for cell, value in enumerate(visits))
    run.log(cfg.iterations, **final)
    progress(cfg.iterations + 1, cfg.iterations + 1)


@dataclass(frozen=True)
class SubmodularRLResults:
    """A run read back from the store: ``iterations`` (T,), per method its batch-mean curves ``curves[method]``
    (n_seeds, T) and, when it finished, ``final_mean`` / ``final_stderr`` / ``visits`` (rows, cols); the grid's
    ``walls`` and ``weights`` (rows, cols), ``ceiling`` (None without one) and ``greedy_value``."""

    iterations: np.ndarray
    curves: dict[str, np.ndarray]
    final_mean: dict[str, float]
    final_stderr: dict[str, float]
    visits: dict[str, np.ndarray]
    walls: np.ndarray
    weights: np.ndarray
    modular_reward: np.ndarray
    ceiling: float | None
    greedy_value: float


def load_results(metrics: pd.DataFrame) -> SubmodularRLResults:
    """Parse one run's long-format metrics (``store.metrics(run_id)``) into arrays for :mod:`lab.submodular_views`."""
    wide = metrics.pivot_table(index="step", columns="name", values="value", aggfunc="last", dropna=False)
    rows, cols = int(wide.loc[0, "grid.rows"]), int(wide.loc[0, "grid.cols"])
    n_cells = rows * cols

    def cell_map(name: str) -> np.ndarray:
        return wide[name].reindex(range(n_cells)).to_numpy(float).reshape(rows, cols)

    trained = wide[wide["iteration"].notna()] if "iteration" in wide else wide.iloc[:0]
    curves = {}
    for method in METHODS:
        names = sorted((name for name in wide.columns if name.startswith(f"{method}.seed")), key=_seed_index)
        if names:
            curves[method] = trained[names].to_numpy(float).T
    finished = [method for method in METHODS if f"{method}.final_mean_F" in wide]
    return SubmodularRLResults(
        iterations=trained["iteration"].to_numpy(float) if len(trained) else np.empty(0),
        curves=curves,
        final_mean={method: float(wide[f"{method}.final_mean_F"].dropna().iloc[0]) for method in finished},
        final_stderr={method: float(wide[f"{method}.final_stderr"].dropna().iloc[0]) for method in finished},
        visits={method: cell_map(f"{method}.visits") for method in finished},
        walls=cell_map("cell.wall") > 0,
        weights=cell_map("cell.weight"),
        modular_reward=cell_map("cell.modular_reward"),
        ceiling=float(trained["ceiling"].iloc[0]) if "ceiling" in trained and len(trained) else None,
        greedy_value=float(trained["greedy_path.F"].iloc[0]) if len(trained) else float("nan"),
    )


def _seed_index(name: str) -> int:
    return int(name.split(".seed")[1].split(".")[0])


register(
    "submodular-rl",
    kind="theory",
    config=SubmodularRLConfig,
    description="SubPO vs modular policy gradient vs uniform random on submodular grid worlds",
    series=(
        *(Series("iteration", f"{method}.mean_F", LABELS[method]) for method in METHODS),
        Series("iteration", "ceiling", "analytic ceiling"),
        Series("iteration", "greedy_path.F", "greedy oracle path"),
    ),
    axis_titles=("iteration", "batch mean F(τ)"),
)(run_submodular_rl)
