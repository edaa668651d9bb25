"""``alignment-tradeoff``: expected reward against KL to the base model, for the KL-regularised
optimum phi_beta ∝ p·exp(r/beta) and for best-of-N, on a finite set of outputs.

Papers: Korbak et al., "RL with KL penalties is better viewed as Bayesian inference"
(arXiv 2205.11275); Yang et al., "Asymptotics of Language Model Alignment" (arXiv 2404.01730).

Steps:
1. Draw an instance from the seed: a base distribution p over ``n_outputs`` outputs (Zipf,
   Dirichlet or uniform) and a reward per output (iid Gaussian, or 0/1 with base mass
   ``p_correct`` on the correct outputs).
2. Trace phi_beta exactly over a geometric grid of beta, from the beta whose KL is 1.2x
   best-of-``max_n``'s (found by :func:`theory.alignment.solve_beta_for_kl`) up to 100 reward
   standard deviations; trace best-of-N exactly for N = 1..max_n (geometric when long).
3. Next to every exact point, the Monte-Carlo estimate from ``mc_samples`` draws of p alone,
   and for every N the reward phi_beta reaches at best-of-N's KL (the gap is >= 0: phi_beta
   is optimal at its own KL).

Every point is one step of the run (``tilted.*`` steps 0..n_betas-1, ``best_of_n.*`` at step N),
each drawn from its own seeded stream, so a resumed run computes exactly what it would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lab.config import ConfigError, param
from lab.registry import Series, register
from lab.runs import RunLogger
from theory import alignment

MAX_CURVE_POINTS = 64
TILTED, BEST_OF_N = 0, 1  # stream ids for the Monte-Carlo seeds


@dataclass(frozen=True)
class AlignmentTradeoffConfig:
    n_outputs: int = param(50, help="size of the finite set of outputs", ge=2, le=1_000_000)
    base: Literal["zipf", "dirichlet", "uniform"] = param("zipf", help="base distribution p over the outputs")
    reward: Literal["gaussian", "binary"] = param("gaussian", help="iid N(0,1) rewards, or 0/1 correctness")
    p_correct: float = param(0.2, help="binary reward: base probability of a correct output", gt=0.0, lt=1.0)
    max_n: int = param(64, help="largest N of best-of-N", ge=1, le=4096)
    n_betas: int = param(40, help="points on the phi_beta curve", ge=2, le=1000)
    mc_samples: int = param(20_000, help="base samples per Monte-Carlo point (0: exact curves only)", ge=0)
    seed: int = param(0, help="seed of the instance and of the Monte-Carlo draws", ge=0)

    def check(self) -> None:
        if 0 < self.mc_samples < 2 * self.max_n:
            raise ConfigError("mc_samples", f"expected 0 or at least 2*max_n = {2 * self.max_n}")


def make_instance(cfg: AlignmentTradeoffConfig) -> tuple[np.ndarray, np.ndarray]:
    """The seeded base distribution p and rewards r of step 1."""
    rng = np.random.default_rng([cfg.seed, 0])
    m = cfg.n_outputs
    if cfg.base == "zipf":
        p = rng.permutation(1.0 / np.arange(1, m + 1) ** 1.1)
    elif cfg.base == "dirichlet":
        p = rng.dirichlet(np.ones(m))
    else:
        p = np.ones(m)
    p = p / p.sum()
    if cfg.reward == "gaussian":
        return p, rng.standard_normal(m)
    correct = np.zeros(m, dtype=bool)
    correct[rng.choice(m, size=max(1, m // 3), replace=False)] = True
    p = np.where(correct, cfg.p_correct * p / p[correct].sum(), (1 - cfg.p_correct) * p / p[~correct].sum())
    return p, correct.astype(float)


def best_of_n_grid(max_n: int) -> np.ndarray:
    """N = 1..max_n, thinned geometrically to at most MAX_CURVE_POINTS values."""
    if max_n <= MAX_CURVE_POINTS:
        return np.arange(1, max_n + 1)
    return np.unique(np.round(np.geomspace(1, max_n, MAX_CURVE_POINTS)).astype(int))


def beta_grid(p: np.ndarray, r: np.ndarray, max_n: int, n_betas: int) -> np.ndarray:
    """Geometric betas from KL = 1.2 KL(best-of-max_n) (capped below KL_max) down to about zero KL."""
    kl_max = -np.log(p[r == r[p > 0].max()].sum())
    kl_bon = float(alignment.best_of_n_curve(p, r, [max(max_n, 2)]).kl[0])
    target = min(1.2 * kl_bon, 0.95 * kl_max)
    beta_small = alignment.solve_beta_for_kl(p, r, target).beta
    spread = np.sqrt(p @ (r - p @ r) ** 2)
    return np.geomspace(beta_small, 100.0 * spread, n_betas)


def _mc_rng(cfg: AlignmentTradeoffConfig, curve: int, step: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, 1, curve, step])


def _monte_carlo_metrics(curve: str, estimate: alignment.MonteCarloEstimate) -> dict[str, float]:
    return {
        f"{curve}.kl_to_ref": estimate.kl,
        f"{curve}.reward": estimate.reward,
        f"{curve}.reward_stderr": estimate.reward_stderr,
    }


def run_alignment_tradeoff(cfg: AlignmentTradeoffConfig, run: RunLogger, progress) -> None:
    """Steps 1-3 of the module docstring; points already logged (a resumed run) are skipped."""
    p, r = make_instance(cfg)
    betas = beta_grid(p, r, cfg.max_n, cfg.n_betas)
    ns = best_of_n_grid(cfg.max_n)
    tilted = alignment.tilted_curve(p, r, betas)
    best_of_n = alignment.best_of_n_curve(p, r, ns)
    total, done = len(betas) + len(ns), 0
    finished_tilted, finished_bon = run.logged_steps("tilted.reward"), run.logged_steps("best_of_n.reward")
    for step, beta in enumerate(betas):
        if step not in finished_tilted:
            metrics = {"tilted.beta": beta, "tilted.kl_to_ref": tilted.kl[step], "tilted.reward": tilted.reward[step]}
            if cfg.mc_samples:
                mc = alignment.monte_carlo_tilted(p, r, beta, cfg.mc_samples, _mc_rng(cfg, TILTED, step))
                metrics |= _monte_carlo_metrics("tilted_mc", mc)
            run.log(step, **metrics)
        done += 1
        progress(done, total)
    for i, n in enumerate(ns):
        n = int(n)
        if n not in finished_bon:
            kl = best_of_n.kl[i]
            metrics = {"best_of_n.kl_to_ref": kl, "best_of_n.reward": best_of_n.reward[i]}
            metrics["best_of_n.kl_bound"] = alignment.best_of_n_kl_bound(n)
            if kl > 0:
                metrics["best_of_n.tilted_reward_at_same_kl"] = alignment.solve_beta_for_kl(p, r, kl).reward
            if cfg.mc_samples:
                mc = alignment.monte_carlo_best_of_n(p, r, n, cfg.mc_samples, _mc_rng(cfg, BEST_OF_N, n))
                metrics |= _monte_carlo_metrics("best_of_n_mc", mc)
            run.log(n, **metrics)
        done += 1
        progress(done, total)


register(
    "alignment-tradeoff",
    kind="theory",
    config=AlignmentTradeoffConfig,
    description="expected reward vs KL(.||p): the KL-regularised optimum against best-of-N, exact and Monte-Carlo",
    series=(
        Series("tilted.kl_to_ref", "tilted.reward", "φβ ∝ p·exp(r/β), exact"),
        Series("best_of_n.kl_to_ref", "best_of_n.reward", "best-of-N, exact"),
        Series("tilted_mc.kl_to_ref", "tilted_mc.reward", "φβ, Monte-Carlo", mode="markers"),
        Series("best_of_n_mc.kl_to_ref", "best_of_n_mc.reward", "best-of-N, Monte-Carlo", mode="markers"),
    ),
    axis_titles=("KL(q ‖ p)", "expected reward E_q[r]"),
    resumable=True,
)(run_alignment_tradeoff)
