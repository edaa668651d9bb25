"""``rlvr-frontier``: the exact reward-KL frontier of the tiny GPT's base distribution over answers, for RLVR runs to be
measured against.

Papers: Korbak et al., "RL with KL penalties is better viewed as Bayesian inference" (arXiv 2205.11275): the
KL-regularised optimum is phi_beta ∝ p·exp(r/beta); Yang et al., "Asymptotics of Language Model Alignment"
(arXiv 2404.01730): best-of-N against it. Steps:

1. Sample ``n_samples`` completions of the base model (``base``, as in rlvr-train) for each of the ``n_prompts``
   held-out prompts that rlvr-train and rlvr-eval use (same ``eval_seed``), at ``temperature``. Per prompt x, the
   distinct completions y and their frequencies give the estimated base p_x(y), and the verifier r_x(y) in {0, 1}.
   A Countdown-lite completion is its answer, so this is the model's sequence distribution restricted to the answers
   it was seen to produce.
2. The frontier over the population (:func:`theory.alignment.population_tilted_curve`): with one beta for every
   prompt, mean KL(phi_beta,x || p_x) and mean E_phi[r_x], for ``n_betas`` betas in [1e-2, 1e2] (binary rewards:
   beta = 1e-2 is already the base conditioned on success, beta = 1e2 the base). It is the most mean reward any
   policy can reach at its mean KL to the base (answer level). Best-of-N with one N for every prompt
   (:func:`theory.alignment.population_best_of_n_curve`), N = 1, 2, 4, ..., ``max_n``, lies on or below it.
3. Logged: ``tilted.beta``, ``tilted.kl_to_ref``, ``tilted.reward`` at steps 0..n_betas-1 (beta descending, so KL
   grows with the step); ``best_of_n.n``, ``best_of_n.kl_to_ref``, ``best_of_n.reward`` at step N; at step 0 the
   base's ``reward`` (pass@1), ``kl_to_ref`` = 0, the conditioned base's ``conditioned.kl_to_ref`` (mean of
   -log P_x(correct) over the prompts it can solve) and ``conditioned.reward`` (the share of those prompts), and
   ``distinct_answers`` (mean per prompt). The names match ``alignment-tradeoff``'s, so the same figures and the
   Compare dashboard read both; an rlvr-train run's held-out ``eval/kl_to_ref`` and ``eval/pass@1`` go on the same
   axes (:func:`lab.rlvr_views.frontier_figure`).

An rlvr-train run's KL is a Monte-Carlo estimate of the sequence-level KL to the true base; the frontier's is exact
for the sampled estimate of the base. With n_samples in the hundreds per prompt the two agree to the estimates'
noise, but a run's point can sit slightly above the frontier by chance, not by beating it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from lab.config import param
from lab.experiments.rlvr import BaseModelFields, held_out_prompts, load_base
from lab.registry import Series, register
from lab.rlvr.model import sample
from lab.rlvr.pretrain import torch_device
from lab.rlvr.tasks import VOCAB, Task, make_task
from lab.runs import RunLogger
from lab.torch_utils import torch_threads
from theory import alignment

BETA_RANGE = (1e-2, 1e2)


@dataclass(frozen=True)
class RLVRFrontierConfig(BaseModelFields):
    n_prompts: int = param(256, help="held-out (test split) prompts, the ones rlvr-train evaluates on", ge=1, le=4096)
    n_samples: int = param(256, help="base samples per prompt that estimate its answer distribution", ge=1, le=8192)
    temperature: float = param(1.0, help="sampling temperature of the base (1: the base itself)", gt=0.0, le=10.0)
    n_betas: int = param(60, help="points of the tilted frontier", ge=2, le=1000)
    max_n: int = param(256, help="largest N of best-of-N (N = 1, 2, 4, ...)", ge=1, le=1_000_000)
    rows_per_batch: int = param(4096, help="completions sampled at once", ge=1, le=1_000_000)


def answer_distributions(task: Task, prompts, completions) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Step 1: per prompt, the empirical distribution of its distinct completions and their verifier rewards."""
    ps, rs = [], []
    for prompt, texts in zip(prompts, completions, strict=True):
        counts = Counter(texts)
        ps.append(np.fromiter(counts.values(), float) / len(texts))
        rs.append(np.array([task.verify(prompt, text) for text in counts]))
    return ps, rs


def sample_completions(
    model, task: Task, prompts, n_samples: int, *, temperature: float, seed: int, rows_per_batch: int
):
    """``n_samples`` decoded completions per prompt from ``model``, prompts taken ``rows_per_batch // n`` at once (the
    chunks and torch seed of :func:`lab.rlvr.trainer.evaluate_model`, so both draw the same completions)."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    chunk = max(1, rows_per_batch // n_samples)
    completions = []
    for first in range(0, len(prompts), chunk):
        ids = torch.as_tensor(VOCAB.encode_batch(prompts[first : first + chunk]), device=model.device)
        samples = sample(
            model, ids, n_samples, task.max_completion_length, temperature=temperature, generator=generator
        )
        texts = VOCAB.decode_batch(samples.tokens.cpu())
        completions += [texts[i : i + n_samples] for i in range(0, len(texts), n_samples)]
    return completions


def conditioned_base(ps, rs) -> tuple[float, float]:
    """(mean KL, mean reward) of the base conditioned on success, the frontier's beta -> 0 end: a prompt with
    P(correct) = c > 0 moves to reward 1 at KL -log c; one with c = 0 stays at reward 0 and KL 0."""
    correct = np.array([p @ r for p, r in zip(ps, rs, strict=True)])
    solvable = correct > 0
    return float(-np.log(correct[solvable]).sum() / correct.size), float(solvable.mean())


def run_rlvr_frontier(cfg: RLVRFrontierConfig, run: RunLogger, progress) -> None:
    """Steps 1-3 of the module docstring."""
    task, device = make_task(cfg.task), torch_device(cfg.device)
    prompts = held_out_prompts(task, cfg.n_prompts, cfg.eval_seed)
    with torch_threads(cfg.threads or None):
        base = load_base(cfg, run, task, device)
        completions = sample_completions(
            base, task, prompts, cfg.n_samples, temperature=cfg.temperature, seed=cfg.eval_seed,
            rows_per_batch=cfg.rows_per_batch,
        )  # fmt: skip
    progress(1, 3)
    ps, rs = answer_distributions(task, prompts, completions)
    betas = np.geomspace(*BETA_RANGE, cfg.n_betas)[::-1]
    tilted = alignment.population_tilted_curve(ps, rs, betas)
    ns = 2 ** np.arange(int(np.log2(cfg.max_n)) + 1)
    best_of_n = alignment.population_best_of_n_curve(ps, rs, ns)
    conditioned_kl, conditioned_reward = conditioned_base(ps, rs)
    run.log(
        0,
        reward=float(np.mean([p @ r for p, r in zip(ps, rs, strict=True)])),
        kl_to_ref=0.0,
        **{"conditioned.kl_to_ref": conditioned_kl, "conditioned.reward": conditioned_reward},
        distinct_answers=float(np.mean([p.size for p in ps])),
    )
    progress(2, 3)
    run.log_rows(
        (step, f"tilted.{name}", float(value))
        for step, point in enumerate(zip(tilted.parameter, tilted.kl, tilted.reward, strict=True))
        for name, value in zip(("beta", "kl_to_ref", "reward"), point, strict=True)
    )
    run.log_rows(
        (int(n), f"best_of_n.{name}", float(value))
        for n, kl, reward in zip(best_of_n.parameter, best_of_n.kl, best_of_n.reward, strict=True)
        for name, value in (("n", n), ("kl_to_ref", kl), ("reward", reward))
    )
    progress(3, 3)


register(
    "rlvr-frontier",
    kind="llm",
    config=RLVRFrontierConfig,
    description="the exact reward-KL frontier (phi_beta, best-of-N) of the tiny GPT's base over held-out answers",
    series=(
        Series("tilted.kl_to_ref", "tilted.reward", "φ_β ∝ p·exp(r/β): the frontier"),
        Series("best_of_n.kl_to_ref", "best_of_n.reward", "best-of-N", mode="lines+markers"),
    ),
    axis_titles=("KL to the base (nats)", "reward (pass@1)"),
    resumable=False,
)(run_rlvr_frontier)
