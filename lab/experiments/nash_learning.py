"""``nash-learning``: Nash mirror prox against its baselines on a regularised preference game, in KL to pi*.

Paper: Tiapkin et al., "Accelerating Nash Learning from Human Feedback via Mirror Prox" (arXiv 2505.19731 v1):
Nash-MP's last iterate satisfies KL(pi* || pi_N) <= (1 + 2 beta)^(-N/2) KL(pi* || mu) after N preference queries,
whatever the number of actions A. Steps:

1. Build the game (:func:`build_game`: family, A, beta, reference mu; float32 when asked) and its ground truth
   pi* by :func:`theory.games.solve_equilibrium` in float64 (on the dense P for a low-rank game small enough for
   Newton). Log at step 0 ``star.kl_to_ref`` = KL(pi* || mu), ``star.certificate``, ``star.exploitability``,
   ``star.newton_steps`` and ``star.seconds``.
2. Run every chosen method from pi_0 = mu with ``target`` pi* (:func:`theory.games.solve_nash`) until
   KL(pi* || pi) <= ``tol`` is certified or it has made ``max_queries`` queries. At step 0 and every
   ``log_every`` iterations (and the last) log ``{m}.iteration``, ``{m}.queries``, ``{m}.seconds`` (solver time,
   logging excluded), ``{m}.kl`` = KL(pi* || pi_k), ``{m}.certificate`` = 1/2 span(r)^2 >= KL,
   ``{m}.exploitability`` = beta KL(pi_k || BR(pi_k)) (half the duality gap) and ``{m}.kl_to_ref`` =
   KL(pi_k || mu); Nash-MP also logs ``nash_mp.bound`` = (1 + 2 beta)^(-N/2) KL(pi* || pi_0) at its step eta' = 2.
   ``approx_nash_mp`` counts its queries as prox steps (two per iteration, each replacing one exact product
   P pi by ``inner_steps`` policy-gradient steps from ``n_samples`` duels); its duels go to
   ``approx_nash_mp.duels``. Its last point logs ``{m}.converged``.
3. For A <= MAX_LOGGED_ACTIONS, log the policies pi* (``policy.star``), mu (``policy.reference``) and each
   method's last iterate (``policy.{m}``), one step per action, for the bar charts of :mod:`lab.games_views`.

A resumed run skips the methods whose ``{m}.converged`` is logged and reruns the others from mu (same seeds,
same values).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from lab.config import ConfigError, param
from lab.registry import Series, register
from lab.runs import RunLogger
from theory.games import METHODS as SOLVERS
from theory.games import (
    PreferenceGame,
    annotator_population_game,
    bradley_terry_game,
    cyclic_game,
    dirichlet_reference,
    kl,
    low_rank_game,
    random_game,
    solve_equilibrium,
    uniform_reference,
    zipf_reference,
)
from theory.games.equilibrium import NEWTON_MAX_ACTIONS
from theory.solver import iterate

METHODS = ("nash_mp", "nash_md", "nash_md_decaying", "mmd", "extragradient", "optimistic", "approx_nash_mp")
LABELS = {
    "nash_mp": "Nash-MP",
    "nash_md": "Nash-MD, constant step",
    "nash_md_decaying": "Nash-MD, decaying step",
    "mmd": "MMD",
    "extragradient": "extragradient",
    "optimistic": "optimistic MD",
    "approx_nash_mp": "approx. Nash-MP (sampled duels)",
}
CURVE_METRICS = ("iteration", "queries", "seconds", "kl", "certificate", "exploitability", "kl_to_ref")
MAX_DENSE_ACTIONS = 5000
"""Dense families store A x A numbers (and pi* uses O(A^3) Newton steps); low-rank games go to 10^6 actions."""
MAX_LOGGED_ACTIONS = 1000
"""Policies are logged one metric row per action, so only for games this small."""
PROX_STEPS_PER_ITERATION = 2


@dataclass(frozen=True)
class NashLearningConfig:
    family: Literal["random", "cyclic", "bradley_terry", "annotators", "low_rank"] = param(
        "random", help="preference matrix: random, generalised rock-paper-scissors, Bradley-Terry, annotators, low rank"
    )
    n_actions: int = param(50, help="A: actions (dense families <= 5000)", ge=2, le=1_000_000)
    beta: float = param(0.1, help="beta: KL regularisation towards mu", ge=1e-3, le=100.0, log=True)
    reference: Literal["uniform", "dirichlet", "zipf"] = param(
        "dirichlet", help="reference policy mu: uniform, Dirichlet(1) draw, or Zipf(1.1) tail"
    )
    n_annotators: int = param(5, help="annotators: Bradley-Terry annotator types averaged into P", ge=1, le=1000)
    rank: int = param(3, help="low_rank: rank r of U and V", ge=1, le=256)
    nash_mp: bool = param(True, help="Nash mirror prox at its certified step eta' = 2")
    nash_md: bool = param(True, help="Nash-MD with the constant step eta' = nash_md_mixing / beta")
    nash_md_decaying: bool = param(True, help="Nash-MD with the decaying step 1 / (beta (t + 2))")
    mmd: bool = param(True, help="magnetic / regularised mirror descent")
    extragradient: bool = param(True, help="policy extragradient (Cen et al.)")
    optimistic: bool = param(True, help="single-call optimistic mirror descent")
    approx_nash_mp: bool = param(False, help="Nash-MP with each prox solved by policy gradient from sampled duels")
    nash_md_mixing: float = param(0.5, help="Nash-MD's constant step as the mixing weight eta' beta", gt=0.0, le=1.0)
    n_samples: int = param(1000, help="approx_nash_mp: duels per policy-gradient step", ge=1, le=1_000_000)
    inner_steps: int = param(4, help="approx_nash_mp: policy-gradient steps per prox", ge=1, le=100)
    max_queries: int = param(1000, help="preference queries per method (approx_nash_mp: prox steps)", ge=2)
    tol: float = param(1e-12, help="stop a method once KL(pi* || pi) <= tol is certified", ge=0.0, lt=1.0)
    log_every: int = param(1, help="iterations between logged points (and certificate checks)", ge=1, le=100_000)
    float32: bool = param(False, help="run the methods in float32 (pi* stays float64)")
    backend: Literal["numpy", "auto", "cupy"] = param("numpy", help="array module: numpy, or cupy on a GPU")
    seed: int = param(0, help="seed of the game, the Dirichlet reference and the sampled duels", ge=0)

    def check(self) -> None:
        if not self.methods:
            raise ConfigError("nash_mp", "expected at least one method to run")
        if self.family == "cyclic" and self.n_actions < 3:
            raise ConfigError("n_actions", f"the cyclic game needs at least 3 actions, got {self.n_actions}")
        if self.family != "low_rank" and self.n_actions > MAX_DENSE_ACTIONS:
            raise ConfigError(
                "n_actions", f"dense families hold A x A numbers: expected <= {MAX_DENSE_ACTIONS}, got "
                f"{self.n_actions} (use family='low_rank' for more actions)"
            )  # fmt: skip

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(name for name in METHODS if getattr(self, name))


def build_reference(cfg: NashLearningConfig) -> np.ndarray:
    if cfg.reference == "uniform":
        return uniform_reference(cfg.n_actions)
    if cfg.reference == "zipf":
        return zipf_reference(cfg.n_actions)
    return dirichlet_reference(cfg.n_actions, seed=np.random.default_rng([cfg.seed, 1]))


def build_game(cfg: NashLearningConfig) -> PreferenceGame:
    """The float64 game of step 1 (the methods run on ``game.astype(float32)`` when ``cfg.float32``)."""
    A, beta, mu, seed = cfg.n_actions, cfg.beta, build_reference(cfg), cfg.seed
    if cfg.family == "random":
        return random_game(A, beta, reference=mu, seed=seed)
    if cfg.family == "cyclic":
        return cyclic_game(A, beta, reference=mu)
    if cfg.family == "bradley_terry":
        return bradley_terry_game(A, beta, reference=mu, seed=seed)
    if cfg.family == "annotators":
        return annotator_population_game(A, cfg.n_annotators, beta, reference=mu, seed=seed)
    return low_rank_game(A, cfg.rank, beta, reference=mu, seed=seed)


def ground_truth(game: PreferenceGame, backend: str = "numpy"):
    """pi* of step 1: Newton-polished to the rounding floor, on the dense P for a low-rank game with A <= 4000."""
    if game.is_low_rank and game.n_actions <= NEWTON_MAX_ACTIONS:
        game = PreferenceGame(game.dense_preference(), game.reference, game.beta)
    return solve_equilibrium(game, backend=backend)


def method_options(name: str, cfg: NashLearningConfig) -> tuple[str, dict]:
    """(theory method, its options) for a config's method name."""
    if name == "nash_md":
        return "nash_md", {"step": cfg.nash_md_mixing / cfg.beta}
    if name == "nash_md_decaying":
        return "nash_md", {"step": "decaying"}
    if name == "approx_nash_mp":
        rng = np.random.default_rng([cfg.seed, 2])
        return name, {"n_samples": cfg.n_samples, "inner_steps": cfg.inner_steps, "seed": rng}
    return name, {}


def nash_mp_bound(queries, beta: float, initial_kl: float):
    """(1 + 2 beta)^(-N/2) KL(pi* || pi_0): Nash-MP's certified last-iterate bound after N queries at eta' = 2."""
    return initial_kl * (1 + 2 * beta) ** (-np.asarray(queries, dtype=float) / 2)


def _queries(name: str, solver) -> int:
    """Queries as logged: prox steps for approx_nash_mp (two per iteration), products P pi for the others."""
    return PROX_STEPS_PER_ITERATION * solver.n_iter if name == "approx_nash_mp" else solver.queries


def _point(name: str, solver, log_star: np.ndarray, log_mu: np.ndarray, seconds: float) -> dict[str, float]:
    log_pi = solver.log_policy
    point = {
        "iteration": solver.n_iter,
        "queries": _queries(name, solver),
        "seconds": seconds,
        "kl": kl(log_star, log_pi),
        "certificate": solver.certificate,
        "exploitability": solver.exploitability,
        "kl_to_ref": kl(log_pi, log_mu),
    }
    if name == "approx_nash_mp":
        point["duels"] = solver.queries
    return {f"{name}.{metric}": float(value) for metric, value in point.items()}


def run_nash_learning(cfg: NashLearningConfig, run: RunLogger, progress) -> None:
    """Steps 1-3 of the module docstring."""
    exact_game = build_game(cfg)
    started = time.perf_counter()
    star = ground_truth(exact_game, cfg.backend)
    log_star, log_mu = star.log_policy.astype(np.float64), np.log(exact_game.reference)
    star_kl_to_ref = kl(log_star, log_mu)
    run.log(
        0,
        **{
            "star.kl_to_ref": star_kl_to_ref,
            "star.certificate": star.certificate,
            "star.exploitability": star.exploitability,
            "star.newton_steps": star.newton_steps,
            "star.seconds": time.perf_counter() - started,
        },
    )
    _log_policy(run, "star", star.policy)
    _log_policy(run, "reference", exact_game.reference)
    game = exact_game.astype(np.float32) if cfg.float32 else exact_game
    for index, name in enumerate(cfg.methods):
        if not run.logged_steps(f"{name}.converged"):
            _run_method(name, cfg, game, log_star, log_mu, run, progress, index * cfg.max_queries)
        progress((index + 1) * cfg.max_queries, len(cfg.methods) * cfg.max_queries)


def _log_policy(run: RunLogger, name: str, policy: np.ndarray) -> None:
    """Step 3: ``policy.{name}`` at steps 0..A-1, for A <= MAX_LOGGED_ACTIONS."""
    if policy.size <= MAX_LOGGED_ACTIONS:
        run.log_rows((action, f"policy.{name}", value) for action, value in enumerate(policy))


def _run_method(name, cfg, game, log_star, log_mu, run: RunLogger, progress, offset: int) -> None:
    """Step 2 (and its policy of step 3) for one method, stepped by :func:`theory.solver.iterate`."""
    method, options = method_options(name, cfg)
    solver = SOLVERS[method](
        game, tol=cfg.tol, target=log_star, check_every=cfg.log_every, backend=cfg.backend, **options
    )
    total = len(cfg.methods) * cfg.max_queries
    started, spent_logging = time.perf_counter(), 0.0

    def log_point() -> None:
        nonlocal spent_logging
        begin = time.perf_counter()
        point = _point(name, solver, log_star, log_mu, begin - started - spent_logging)
        if name == "nash_mp":
            point["nash_mp.bound"] = float(nash_mp_bound(point["nash_mp.queries"], cfg.beta, initial_kl))
        run.log(solver.n_iter, **point)
        progress(offset + min(_queries(name, solver), cfg.max_queries), total)
        spent_logging += time.perf_counter() - begin

    def record(state) -> bool:
        over_budget = _queries(name, solver) >= cfg.max_queries
        if state.n_iter % cfg.log_every == 0 or over_budget or solver.converged:
            log_point()
        return over_budget

    initial_kl = kl(log_star, solver.log_policy)
    log_point()
    outcome = iterate(solver, max_iter=cfg.max_queries, callback=record)
    _log_policy(run, name, solver.policy)
    run.log(outcome.n_iter, **{f"{name}.converged": float(outcome.converged)})


register(
    "nash-learning",
    kind="theory",
    config=NashLearningConfig,
    description="Nash mirror prox vs Nash-MD, MMD, extragradient, optimistic MD: KL to the regularised equilibrium",
    series=(
        *(Series(f"{name}.queries", f"{name}.kl", LABELS[name]) for name in METHODS),
        Series("nash_mp.queries", "nash_mp.bound", "Nash-MP bound (1+2β)^(−N/2)·KL₀"),
    ),
    axis_titles=("preference queries N (approx. Nash-MP: prox steps)", "KL(π* ‖ π)"),
    resumable=True,
    log_y=True,
)(run_nash_learning)


@dataclass(frozen=True)
class NashLearningResults:
    """A run read back from the store: per method its ``curves`` (``CURVE_METRICS`` arrays, plus ``bound`` for
    Nash-MP and ``duels`` for approx. Nash-MP), the logged ``policies`` (``star``, ``reference``, methods; empty when
    A > MAX_LOGGED_ACTIONS), ``initial_kl`` = KL(pi* || mu) and the ground truth's ``star_certificate``."""

    curves: dict[str, dict[str, np.ndarray]]
    policies: dict[str, np.ndarray]
    initial_kl: float
    star_certificate: float


def load_results(metrics: pd.DataFrame) -> NashLearningResults:
    """Parse one run's long-format metrics (``store.metrics(run_id)``) for :mod:`lab.games_views`."""
    by_name = {name: frame.sort_values("step") for name, frame in metrics.groupby("name")}

    def column(name: str) -> np.ndarray:
        return by_name[name]["value"].to_numpy(float)

    curves = {}
    for method in METHODS:
        if f"{method}.kl" not in by_name:
            continue
        names = [*CURVE_METRICS, "bound", "duels"]
        curves[method] = {key: column(f"{method}.{key}") for key in names if f"{method}.{key}" in by_name}
    policies = {name.removeprefix("policy."): column(name) for name in by_name if name.startswith("policy.")}
    return NashLearningResults(
        curves=curves,
        policies=policies,
        initial_kl=float(column("star.kl_to_ref")[0]),
        star_certificate=float(column("star.certificate")[0]),
    )
