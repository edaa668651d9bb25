"""``latent-mdp``: regret of optimistic, greedy and posterior-sampling learners in a latent MDP.

Paper: Zhou, Wang & Du, "Horizon-Free and Variance-Dependent Reinforcement Learning for Latent Markov Decision
Processes" (arXiv 2210.11604, ICML 2023): with the context revealed after each episode, value-optimistic planning
over histories with a Bernstein bonus has regret O~(sqrt(Var* M Gamma S A K)), free of H.

1. Build the instance (:func:`build_lmdp`) and log its reference values at step 0: ``value.optimal`` V*
   (history-dependent), ``value.markov`` V_Markov (best Markov policy, brute force; NaN when too large),
   ``value.oracle`` V_oracle (the context told up front) and the gaps ``gap.context`` = V_oracle - V* (what
   knowing the context is worth) and ``gap.history`` = V* - V_Markov (what memory of the episode is worth).
2. For every chosen learner and seed k (seed + k), run :func:`theory.lmdp.run_learner` for K episodes, logging
   ``{learner}.seed{k}.cumulative_regret`` (exact, V* - V^{pi_k} summed) at every ``log_every``-th episode and
   at K, with ``episode`` at the same steps; at the end of the pair, its log-log slope between K/4 and K
   (``{learner}.seed{k}.slope``: 1 linear, 1/2 sqrt(K), 0 flat) at step K.
3. Resuming a stopped run skips the (learner, seed) pairs whose slope is logged; a pair stopped half-way is
   run again from its first episode (same seed, same values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from lab.config import ConfigError, param
from lab.registry import Series, register
from lab.runs import RunLogger
from theory.lmdp import (
    LatentMDP,
    ModelBasedLearner,
    PosteriorSampling,
    ReferenceValues,
    deep_sea_lmdp,
    random_lmdp,
    reference_values,
    revealing_lmdp,
    run_learner,
)
from theory.lmdp.planning import MAX_HISTORIES

LEARNERS = ("bernstein", "hoeffding", "certainty_equivalence", "psrl")
LABELS = {
    "bernstein": "Bernstein bonus",
    "hoeffding": "Hoeffding bonus",
    "certainty_equivalence": "certainty equivalence",
    "psrl": "posterior sampling",
}
SLOPE_FROM = 4
"""The logged slope is fitted between episodes K / SLOPE_FROM and K."""


@dataclass(frozen=True)
class LatentMDPConfig:
    instance: Literal["random", "deterministic", "revealing", "deep_sea"] = param(
        "random", help="Dirichlet or deterministic random LMDP, the revealing instance, or deep-sea chains"
    )
    n_contexts: int = param(2, help="M: contexts (revealing: 2)", ge=1, le=8)
    n_states: int = param(3, help="S: states (revealing: 3; deep_sea: S = H)", ge=1, le=10)
    n_actions: int = param(2, help="A: actions (revealing, deep_sea: 2)", ge=1, le=5)
    horizon: int = param(4, help="H: steps per episode (revealing: 3; deep_sea: the depth, >= 2)", ge=1, le=10)
    concentration: float = param(0.3, help="random: Dirichlet concentration of P and nu", gt=0.0, le=10.0, log=True)
    reveal_probability: float = param(
        0.8, help="revealing: probability that the probe shows the context", ge=0.0, le=1.0
    )
    instance_seed: int = param(0, help="seed of the random instance", ge=0)
    episodes: int = param(2000, help="K: episodes per learner and seed", ge=8, le=200_000)
    log_every: int = param(20, help="log the cumulative regret every this many episodes", ge=1, le=10_000)
    bernstein: bool = param(True, help="optimistic planning with the Bernstein bonus")
    hoeffding: bool = param(True, help="optimistic planning with the Hoeffding bonus")
    certainty_equivalence: bool = param(True, help="plan on the empirical model, no bonus")
    psrl: bool = param(True, help="posterior sampling (PSRL)")
    bonus_scale: float = param(1.0, help="c: scale of the optimism bonus", gt=0.0, le=100.0, log=True)
    n_seeds: int = param(2, help="learning seeds per learner", ge=1, le=50)
    seed: int = param(0, help="first learning seed", ge=0)

    def check(self) -> None:
        if not self.learners:
            raise ConfigError("bernstein", "expected at least one learner to run")
        if self.instance == "deep_sea" and self.horizon < 2:
            raise ConfigError("horizon", f"deep_sea needs a depth H >= 2, got {self.horizon}")
        n_states, n_actions, horizon = self.dimensions
        histories = sum(n_states * (n_states * n_actions) ** h for h in range(horizon))
        if histories > MAX_HISTORIES:
            raise ConfigError(
                "horizon", f"planning over histories needs {histories} > {MAX_HISTORIES} of them; shrink S, A or H"
            )

    @property
    def learners(self) -> tuple[str, ...]:
        return tuple(name for name in LEARNERS if getattr(self, name))

    @property
    def dimensions(self) -> tuple[int, int, int]:
        """(S, A, H) of the instance actually built."""
        if self.instance == "revealing":
            return 3, 2, 3
        if self.instance == "deep_sea":
            return self.horizon, 2, self.horizon
        return self.n_states, self.n_actions, self.horizon


def build_lmdp(cfg: LatentMDPConfig) -> LatentMDP:
    if cfg.instance == "revealing":
        return revealing_lmdp(cfg.reveal_probability)
    if cfg.instance == "deep_sea":
        return deep_sea_lmdp(cfg.horizon, cfg.n_contexts)
    return random_lmdp(
        cfg.n_contexts,
        cfg.n_states,
        cfg.n_actions,
        cfg.horizon,
        concentration=cfg.concentration,
        deterministic=cfg.instance == "deterministic",
        seed=cfg.instance_seed,
    )


def make_learner(name: str, cfg: LatentMDPConfig):
    if name == "psrl":
        return PosteriorSampling()
    bonus = "none" if name == "certainty_equivalence" else name
    return ModelBasedLearner(bonus, scale=cfg.bonus_scale)


def slope_window(episodes: int) -> tuple[int, int]:
    return max(1, episodes // SLOPE_FROM), episodes


def reference_metrics(references: ReferenceValues) -> dict[str, float]:
    markov = np.nan if references.markov is None else references.markov
    return {
        "value.optimal": references.optimal,
        "value.markov": markov,
        "value.oracle": references.oracle,
        "gap.context": references.oracle - references.optimal,
        "gap.history": references.optimal - markov,
    }


def run_latent_mdp(cfg: LatentMDPConfig, run: RunLogger, progress) -> None:
    """Steps 1-3 of the module docstring."""
    lmdp = build_lmdp(cfg)
    run.log(0, **reference_metrics(reference_values(lmdp)))
    n_episodes = cfg.episodes
    pairs = [(name, k) for name in cfg.learners for k in range(cfg.n_seeds)]
    total = len(pairs) * n_episodes
    for index, (name, k) in enumerate(pairs):
        prefix = f"{name}.seed{k}"
        if n_episodes not in run.logged_steps(f"{prefix}.slope"):

            def log_curve(state, prefix=prefix, offset=index * n_episodes):
                run.log(
                    state.n_iter,
                    episode=state.n_iter,
                    **{f"{prefix}.cumulative_regret": state.metrics["cumulative_regret"]},
                )
                if state.n_iter < n_episodes:  # the pair's end is reported once its slope is logged
                    progress(offset + state.n_iter, total)

            result = run_learner(
                lmdp,
                make_learner(name, cfg),
                n_episodes,
                cfg.seed + k,
                callback=log_curve,
                callback_every=cfg.log_every,
            )
            k_from, k_to = slope_window(n_episodes)
            positive = result.cumulative_regret[k_from - 1] > 0
            run.log(n_episodes, **{f"{prefix}.slope": result.slope(k_from, k_to) if positive else np.nan})
        progress((index + 1) * n_episodes, total)


@dataclass(frozen=True)
class LatentMDPResults:
    """A run read back from the store: logged ``episodes`` (P,), per learner ``curves`` (n_seeds, P) of cumulative
    regret and the seeds' mean log-log ``slopes`` (finished pairs only), and the instance's ``references``."""

    episodes: np.ndarray
    curves: dict[str, np.ndarray]
    slopes: dict[str, float]
    references: ReferenceValues


def load_results(metrics: pd.DataFrame) -> LatentMDPResults:
    """Parse one run's long-format metrics (``store.metrics(run_id)``) for :mod:`lab.lmdp_views`."""
    wide = metrics.pivot_table(index="step", columns="name", values="value", aggfunc="last", dropna=False)
    logged = wide[wide["episode"].notna()] if "episode" in wide else wide.iloc[:0]
    curves, slopes = {}, {}
    for name in LEARNERS:
        columns = _per_seed(wide.columns, name, "cumulative_regret")
        if columns:
            curves[name] = logged[columns].to_numpy(float).T
        values = wide[_per_seed(wide.columns, name, "slope")].to_numpy(float).ravel()
        if np.isfinite(values).any():
            slopes[name] = float(np.nanmean(values))
    markov = wide.loc[0, "value.markov"]
    references = ReferenceValues(
        optimal=float(wide.loc[0, "value.optimal"]),
        markov=None if np.isnan(markov) else float(markov),
        oracle=float(wide.loc[0, "value.oracle"]),
    )
    return LatentMDPResults(
        episodes=logged["episode"].to_numpy(float) if len(logged) else np.empty(0),
        curves=curves,
        slopes=slopes,
        references=references,
    )


def _per_seed(names, learner: str, quantity: str) -> list[str]:
    """The metric names ``{learner}.seed{k}.{quantity}``, ordered by k."""
    matching = [n for n in names if n.startswith(f"{learner}.seed") and n.endswith(f".{quantity}")]
    return sorted(matching, key=lambda n: int(n[len(learner) + 5 :].split(".")[0]))


register(
    "latent-mdp",
    kind="theory",
    config=LatentMDPConfig,
    description="regret of Bernstein/Hoeffding optimism, certainty equivalence and PSRL in a latent MDP",
    series=tuple(Series("episode", f"{name}.seed0.cumulative_regret", f"{LABELS[name]} (seed 0)") for name in LEARNERS),
    axis_titles=("episode k", "cumulative regret Σ (V* − V^πk)"),
    resumable=True,
)(run_latent_mdp)
