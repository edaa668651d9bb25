"""``nash-lm``: Nash learning on the tiny LM against a verifiable preference oracle, beside the tabular Nash-MP.

Paper: Tiapkin et al., "Accelerating Nash Learning from Human Feedback via Mirror Prox" (arXiv 2505.19731 v1):
Nash-MP's last iterate converges linearly, KL(pi* || pi_N) <= (1 + 2 beta)^(-N/2) KL(pi* || mu) after N preference
queries, and its approximate version runs on LLMs with policy-gradient prox steps. Nash-MD (Munos et al., arXiv
2312.00886) is the baseline. Steps (kind ``llm``):

1. Base model as ``rlvr-train`` (``base``: ``"cached"`` pretrains once per setting, ``"run:ID"``, or a path;
   :func:`lab.experiments.rlvr.load_base`); the oracle of :mod:`lab.rlvr.preference` (``preference``: ``closer`` or
   ``intransitive``).
2. Held-out games (:class:`lab.rlvr.nash.HeldOutGames`): ``eval_prompts`` test-split prompts (from ``eval_seed``),
   the base's smoothed answer distribution mu_hat from ``eval_samples`` samples each, and the equilibrium pi* of
   PreferenceGame(P_x, mu_hat_x, beta).
3. Tabular Nash-MP on the same games: :class:`theory.games.NashMirrorProx` at step eta from mu_hat, for
   ``tabular_iterations`` iterations; logged at step k: ``tabular.iteration``, ``tabular.queries`` (exact products
   P pi per game, two per iteration), ``tabular.kl`` = mean_x KL(pi*_x || pi_k,x) and ``tabular.bound`` =
   (1 + eta beta)^(-N/2) mean_x KL(pi*_x || mu_hat_x) (the abstract's bound at eta = 2; at eta < 2 the per-iteration
   contraction 1 / (1 + eta beta) of the composite mirror-prox argument in notes/games.md).
4. The LM: :class:`lab.rlvr.nash.NashLearner` (``method`` nash_mp or nash_md) from the base; every iteration logs
   ``iteration``, ``queries`` (oracle calls, one per compared pair) and the learner's statistics as ``train/...``
   (``train/preference``, ``train/kl_to_ref``, ``train/kl_to_anchor``, ``train/loss``, ``train/grad_norm``,
   ``train/step_seconds``); at step 0 and every ``eval_every`` iterations (and the last) the held-out metrics
   ``win_rate_vs_ref``, ``kl_to_equilibrium``, ``kl_to_ref`` (+ ``.stderr``) and ``pass@1``. The plot puts
   ``kl_to_equilibrium`` against ``queries`` beside ``tabular.kl`` against ``tabular.queries``: the x axis counts
   queries, but an LM query is one sampled duel while a tabular query is one exact product P pi (A^2 duels' worth).

Resuming: the learner continues from its checkpoint ``policy.pt`` (saved every ``checkpoint_every`` iterations and
when stopped); the iterations logged after it are recomputed and come out identical, and steps 2-3 are recomputed
from the same seeds, so a resumed run ends with the metrics of an uninterrupted one (wall-clock metrics excepted).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lab.config import ConfigError, param
from lab.experiments.rlvr import BaseModelFields, load_base, prefixed, stop_requested
from lab.registry import Series, StopRequested, register
from lab.rlvr.nash import HeldOutGames, NashConfig, NashLearner, train_nash
from lab.rlvr.preference import KINDS
from lab.rlvr.pretrain import torch_device
from lab.rlvr.tasks import CountdownLite
from lab.runs import Run, RunLogger
from lab.torch_utils import torch_threads
from theory.games import NashMirrorProx, kl

CHECKPOINT_NAME = "policy.pt"


@dataclass(frozen=True)
class NashLMConfig(BaseModelFields):
    task: Literal["countdown"] = param("countdown", help="verifiable task (the oracle compares Countdown-lite answers)")
    preference: Literal[KINDS] = param("closer", help="oracle: closer to the target wins, or a 3-criteria majority")
    method: Literal["nash_mp", "nash_md"] = param("nash_mp", help="approximate Nash mirror prox, or Nash-MD")
    beta: float = param(0.1, help="beta: KL regularisation towards the base", gt=0.0, le=10.0, log=True)
    eta: float = param(
        2.0, help="prox step (theory.games' eta'): Nash-MP <= 2, Nash-MD eta beta <= 1", gt=0.0, le=100.0
    )
    steps: int = param(100, help="Nash iterations (Nash-MP: two prox steps each)", ge=1, le=1_000_000)
    prompts_per_step: int = param(8, help="P train prompts per policy-gradient update", ge=1, le=4096)
    group_size: int = param(8, help="G completions per prompt from the policy", ge=2, le=1024)
    opponents: int = param(8, help="G' opponent completions per prompt", ge=1, le=1024)
    inner_steps: int = param(2, help="policy-gradient updates per prox step", ge=1, le=1000)
    lr: float = param(1e-4, help="AdamW learning rate (constant)", gt=0.0, le=1.0, log=True)
    seed: int = param(0, help="seed of the training prompts and samples", ge=0)
    eval_every: int = param(10, help="held-out evaluation every this many iterations (0: first and last only)", ge=0)
    eval_prompts: int = param(32, help="held-out (test split) prompts of the games", ge=1, le=4096)
    eval_samples: int = param(64, help="samples per held-out prompt for the answer distributions", ge=1, le=4096)
    smoothing: float = param(0.1, help="add-alpha smoothing of the estimated answer distributions", gt=0.0, le=10.0)
    tabular_iterations: int = param(100, help="iterations of the tabular Nash-MP on the held-out games", ge=1)
    checkpoint_every: int = param(10, help="save the checkpoint every this many iterations", ge=1)

    def check(self) -> None:
        super().check()
        try:
            self.nash_config()
        except ValueError as error:
            name, _, problem = str(error).partition(": ")
            raise ConfigError("preference" if name == "kind" else name, problem) from None

    def nash_config(self) -> NashConfig:
        return NashConfig(
            method=self.method,
            kind=self.preference,
            beta=self.beta,
            eta=self.eta,
            prompts_per_step=self.prompts_per_step,
            group_size=self.group_size,
            opponents=self.opponents,
            inner_steps=self.inner_steps,
            lr=self.lr,
            steps=self.steps,
            checkpoint_every=self.checkpoint_every,
            seed=self.seed,
        )


def held_out_games(cfg: NashLMConfig, base, task: CountdownLite) -> HeldOutGames:
    """Step 2 of the module docstring."""
    return HeldOutGames(
        base,
        task,
        task.sample_prompts(cfg.eval_prompts, cfg.eval_seed, "test"),
        kind=cfg.preference,
        beta=cfg.beta,
        n_samples=cfg.eval_samples,
        smoothing=cfg.smoothing,
        seed=cfg.eval_seed,
    )


def tabular_curve(games: HeldOutGames, eta: float, iterations: int) -> dict[str, np.ndarray]:
    """Step 3: ``iteration``, ``queries``, ``kl`` (mean over the games) and ``bound`` at iterations 0..iterations."""
    kls = []
    for game, log_star in zip(games.games(), games.equilibria, strict=True):
        solver = NashMirrorProx(game, step=eta, target=log_star, backend="numpy")
        kls.append([kl(log_star, solver.log_policy)] + [solver.step()["kl"] for _ in range(iterations)])
    iteration = np.arange(iterations + 1)
    queries = 2.0 * iteration
    mean_kl = np.mean(kls, axis=0)
    bound = mean_kl[0] * (1 + eta * games.beta) ** (-queries / 2)
    return {"iteration": iteration.astype(float), "queries": queries, "kl": mean_kl, "bound": bound}


def run_nash_lm(cfg: NashLMConfig, run: RunLogger, progress) -> None:
    """Steps 1-4 of the module docstring."""
    task, device = CountdownLite(), torch_device(cfg.device)
    checkpoint = run.artifact_dir / CHECKPOINT_NAME if isinstance(run, Run) else None
    stopped = False
    with torch_threads(cfg.threads or None):
        base = load_base(cfg, run, task, device)
        games = held_out_games(cfg, base, task)
        curve = tabular_curve(games, cfg.eta, cfg.tabular_iterations)
        steps = curve["iteration"].astype(int)
        run.log_rows((int(k), f"tabular.{name}", float(values[k])) for name, values in curve.items() for k in steps)
        learner = NashLearner(copy.deepcopy(base), base, task, cfg.nash_config(), checkpoint_path=checkpoint)

        def log_evaluation(step: int) -> None:
            run.log(step, iteration=step, queries=learner.queries, **games.evaluate(learner.model))

        def watch(state) -> bool:
            nonlocal stopped
            step = learner.step_count
            metrics = dict(state.metrics)
            run.log(step, iteration=step, queries=metrics.pop("queries"), **prefixed(metrics, "train/"))
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
                log_evaluation(step)
            stopped = stop_requested(progress, step, cfg.steps)
            return stopped

        if learner.step_count == 0:
            log_evaluation(0)
        result = train_nash(learner, callback=watch)
    if stopped:
        raise StopRequested(f"stopped at step {result.step}/{cfg.steps}; resume continues from its checkpoint")


register(
    "nash-lm",
    kind="llm",
    config=NashLMConfig,
    description="Nash-MP / Nash-MD on the tiny LM with a verifiable preference oracle, beside the tabular Nash-MP",
    series=(
        Series("queries", "kl_to_equilibrium", "LM: KL(π* ‖ π̂) on held-out prompts", mode="lines+markers"),
        Series("tabular.queries", "tabular.kl", "tabular Nash-MP: KL(π* ‖ π_k)"),
        Series("tabular.queries", "tabular.bound", "bound (1+ηβ)^(−N/2)·KL₀"),
        Series("queries", "win_rate_vs_ref", "LM: win rate against the base", mode="lines+markers"),
    ),
    axis_titles=("preference queries N (LM: duels; tabular: products Pπ)", "KL to the equilibrium / win rate"),
    resumable=True,
    log_y=True,
)(run_nash_lm)
