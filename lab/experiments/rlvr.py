"""``rlvr-pretrain``, ``rlvr-train``, ``rlvr-eval``: the small-LM RLVR runs (kind ``llm``) of :mod:`lab.rlvr`.

1. ``rlvr-pretrain``: :func:`lab.rlvr.pretrain.pretrain` of a GPT of the given size on the task's corpus, checkpoint
   ``base.pt`` in the run's artifact folder; logs ``loss`` and ``lr`` every step and the held-out evaluation
   (``eval/pass@1``, ``eval/pass@{k}``, ``eval/entropy``, ...) every ``eval_every`` steps and at the end.
2. ``rlvr-train``: an :class:`lab.rlvr.trainer.RLVRTrainer` on a base model (``base``: ``"cached"`` pretrains once
   per setting into ``artifacts/rlvr-base/`` beside the store, ``"run:ID"`` takes the checkpoint of an rlvr-pretrain
   or rlvr-train run, anything else is a checkpoint path) with one objective (``hyperparameters`` as
   ``"beta=0.04, epsilon_high=0.28"``). Logs every step the trainer's metrics (``reward``, ``pass@1``,
   ``kl_to_ref``, ``entropy``, ``loss``, ``{objective}/...``) and, every ``eval_every`` steps (step 0 = the base
   included), the held-out evaluation under ``eval/``; checkpoint ``policy.pt``.
3. ``rlvr-eval``: one policy (``"base"``, ``"run:ID"`` or a path) on ``n_prompts`` held-out prompts with
   ``n_samples`` each, logged at step 0: ``pass@{k}`` for k = 1, 2, 4, ..., n with ``pass@{k}.low`` / ``.high``
   (bootstrap over prompts), ``minority/pass@{k}`` and ``majority/pass@{k}`` (Countdown-lite), ``support``,
   ``answer_entropy``, ``entropy`` (token level), ``strategy/{label}``, ``kl_to_ref`` (+ ``.stderr``) to the base.

The held-out prompts and their sampling seed come from ``eval_seed`` alone, so every run of a task is evaluated on
the same prompts with common random numbers. Resuming: rlvr-pretrain and rlvr-train continue from their checkpoint
(saved every ``checkpoint_every`` steps and when stopped); the steps logged after it are recomputed and come out
identical, so a resumed run ends with the metrics of an uninterrupted one (same device and threads; wall-clock
metrics excepted).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from lab.config import ConfigError, as_dict, param
from lab.registry import Series, StopRequested, register
from lab.rlvr.objectives import OBJECTIVES
from lab.rlvr.pretrain import DEFAULT_BASE, cached_base_model, pretrain, task_config, torch_device
from lab.rlvr.tasks import Task, make_task
from lab.rlvr.trainer import (
    RLVRTrainer,
    TrainerConfig,
    evaluate_model,
    evaluation_metrics,
    load_policy,
    minority_prompts,
    train_rlvr,
)
from lab.runs import Run, RunLogger, default_store_path
from lab.torch_utils import torch_threads

TASKS = Literal["countdown", "addition", "multiplication"]
OBJECTIVE_NAMES = Literal[tuple(OBJECTIVES)]
DEVICES = Literal["auto", "cpu", "cuda"]
RUN_REFERENCE = re.compile(r"run:(\d+)")
CHECKPOINT_NAMES = {"rlvr-pretrain": "base.pt", "rlvr-train": "policy.pt"}
BASE_CACHE = "rlvr-base"
"""Folder of the pretrain-once cache, under the store's ``artifacts/``."""


def parse_hyperparameters(text: str) -> dict[str, float | int | bool]:
    """``"beta=0.04, whiten=false, max_length=6"`` -> {"beta": 0.04, "whiten": False, "max_length": 6}; ""
    -> {}. ConfigError naming ``hyperparameters`` otherwise."""
    values: dict[str, float | int | bool] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = (part.strip() for part in item.partition("="))
        if not sep or not key.isidentifier() or not raw:
            raise ConfigError("hyperparameters", f"expected 'name=value, ...', got {item!r}")
        if raw.lower() in ("true", "false"):
            values[key] = raw.lower() == "true"
        elif re.fullmatch(r"[+-]?\d+", raw):
            values[key] = int(raw)
        else:
            try:
                values[key] = float(raw)
            except ValueError:
                raise ConfigError("hyperparameters", f"{key}: expected a number or true/false, got {raw!r}") from None
    return values


def _check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "no CUDA device is available; use 'auto' or 'cpu'")


def _check_base(base: str) -> None:
    if base != "cached" and not RUN_REFERENCE.fullmatch(base) and not Path(base).is_file():
        raise ConfigError("base", f"expected 'cached', 'run:ID' or the path of a checkpoint file, got {base!r}")


@dataclass(frozen=True)
class RLVRPretrainConfig:
    task: TASKS = param("countdown", help="verifiable task (Countdown-lite: two strategies, a minority type)")
    n_layer: int = param(4, help="transformer blocks", ge=1, le=24)
    n_head: int = param(4, help="attention heads", ge=1, le=32)
    n_embd: int = param(128, help="width (a multiple of n_head)", ge=8, le=2048)
    steps: int = param(DEFAULT_BASE["steps"], help="pretraining steps", ge=1, le=1_000_000)
    seconds: float = param(0.0, help="training-seconds budget (0: none; the run ends at whichever comes first)", ge=0)
    batch_size: int = param(DEFAULT_BASE["batch_size"], help="(prompt, answer) pairs per step", ge=1, le=65536)
    lr: float = param(DEFAULT_BASE["lr"], help="AdamW learning rate after warm-up", gt=0.0, le=1.0, log=True)
    warmup_steps: int = param(50, help="linear learning-rate warm-up", ge=0)
    seed: int = param(DEFAULT_BASE["seed"], help="initialisation and data seed", ge=0)
    eval_every: int = param(250, help="held-out evaluation every this many steps (0: only at the end)", ge=0)
    eval_prompts: int = param(128, help="held-out (test split) prompts", ge=1, le=4096)
    eval_samples: int = param(8, help="samples per held-out prompt", ge=1, le=1024)
    eval_seed: int = param(0, help="seed of the held-out prompts and of their samples", ge=0)
    checkpoint_every: int = param(200, help="save the checkpoint every this many steps", ge=1)
    threads: int = param(1, help="torch threads (0: leave unchanged)", ge=0, le=256)
    device: DEVICES = param("auto", help="auto: CUDA when available, else CPU")

    def check(self) -> None:
        if self.n_embd % self.n_head:
            raise ConfigError("n_embd", f"expected a multiple of n_head={self.n_head}, got {self.n_embd}")
        _check_device(self.device)


@dataclass(frozen=True)
class BaseModelFields:
    """Which base model (the reference of the KL) and task: shared by the LLM experiments (rlvr-train, rlvr-eval,
    rlvr-frontier, nash-lm)."""

    task: TASKS = param("countdown", help="verifiable task")
    base: str = param("cached", help="'cached' (pretrain once, see base_*), 'run:ID' or a checkpoint path")
    base_layers: int = param(4, help="cached base: transformer blocks", ge=1, le=24)
    base_heads: int = param(4, help="cached base: attention heads", ge=1, le=32)
    base_width: int = param(128, help="cached base: width (a multiple of base_heads)", ge=8, le=2048)
    base_steps: int = param(DEFAULT_BASE["steps"], help="cached base: pretraining steps", ge=1, le=1_000_000)
    base_seed: int = param(DEFAULT_BASE["seed"], help="cached base: pretraining seed", ge=0)
    eval_seed: int = param(0, help="seed of the held-out prompts and of their samples", ge=0)
    threads: int = param(1, help="torch threads (0: leave unchanged)", ge=0, le=256)
    device: DEVICES = param("auto", help="auto: CUDA when available, else CPU")

    def check(self) -> None:
        _check_base(self.base)
        if self.base_width % self.base_heads:
            raise ConfigError(
                "base_width", f"expected a multiple of base_heads={self.base_heads}, got {self.base_width}"
            )
        _check_device(self.device)


@dataclass(frozen=True)
class RLVRTrainConfig(BaseModelFields):
    objective: OBJECTIVE_NAMES = param("grpo", help="loss of lab.rlvr.objectives")
    hyperparameters: str = param("", help="objective keywords, e.g. 'beta=0.04, epsilon_high=0.28' (empty: defaults)")
    steps: int = param(200, help="RL updates", ge=1, le=1_000_000)
    prompts_per_step: int = param(8, help="P prompts per update", ge=1, le=4096)
    group_size: int = param(8, help="G completions per prompt", ge=1, le=1024)
    max_new_tokens: int = param(0, help="completion budget in tokens (0: the task's answer length + EOS)", ge=0)
    temperature: float = param(1.0, help="sampling temperature of the rollouts", gt=0.0, le=10.0)
    lr: float = param(3e-5, help="AdamW learning rate (constant)", gt=0.0, le=1.0, log=True)
    weight_decay: float = param(0.0, help="AdamW weight decay on matrices", ge=0.0, le=1.0)
    value_lr: float = param(1e-3, help="PPO value head learning rate", gt=0.0, le=1.0, log=True)
    track_kl: bool = param(True, help="score under the base every step to log kl_to_ref")
    seed: int = param(0, help="seed of the training prompts and rollouts", ge=0)
    eval_every: int = param(50, help="held-out evaluation every this many steps (0: never)", ge=0)
    eval_prompts: int = param(256, help="held-out (test split) prompts", ge=1, le=4096)
    eval_samples: int = param(16, help="samples per held-out prompt", ge=1, le=1024)
    eval_temperature: float = param(1.0, help="sampling temperature of the evaluation", gt=0.0, le=10.0)
    checkpoint_every: int = param(50, help="save the checkpoint every this many steps", ge=1)

    def check(self) -> None:
        super().check()
        longest = make_task(self.task).max_completion_length + 1  # the cached base's block_size allows one more
        if self.base == "cached" and self.max_new_tokens > longest:
            raise ConfigError(
                "max_new_tokens", f"the cached base fits at most {longest} new tokens, got {self.max_new_tokens}"
            )
        try:
            self.trainer_config()
        except (ValueError, TypeError) as error:
            name, _, problem = str(error).partition(": ")
            field = name if name in as_dict(self) else "hyperparameters"
            raise ConfigError(field, problem if field == name else str(error)) from None

    def trainer_config(self) -> TrainerConfig:
        return TrainerConfig(
            objective=self.objective,
            hyperparameters=parse_hyperparameters(self.hyperparameters),
            prompts_per_step=self.prompts_per_step,
            group_size=self.group_size,
            max_new_tokens=self.max_new_tokens or None,
            temperature=self.temperature,
            lr=self.lr,
            weight_decay=self.weight_decay,
            value_lr=self.value_lr,
            track_kl=self.track_kl,
            steps=self.steps,
            checkpoint_every=self.checkpoint_every,
            seed=self.seed,
        )


@dataclass(frozen=True)
class RLVREvalConfig(BaseModelFields):
    policy: str = param("base", help="'base', 'run:ID' (rlvr-train/rlvr-pretrain run) or a checkpoint path")
    n_prompts: int = param(256, help="held-out (test split) prompts", ge=1, le=4096)
    n_samples: int = param(256, help="samples per prompt (pass@k for k = 1, 2, 4, ..., n_samples)", ge=1, le=4096)
    temperature: float = param(1.0, help="sampling temperature", gt=0.0, le=10.0)
    n_boot: int = param(1000, help="bootstrap resamples of the prompts for the intervals", ge=1, le=100_000)

    def check(self) -> None:
        super().check()
        if self.policy != "base":
            try:
                _check_base(self.policy)
            except ConfigError as error:
                raise ConfigError(
                    "policy", f"expected 'base', 'run:ID' or a checkpoint path, got {self.policy!r}"
                ) from error


# ---------------------------------------------------------------------------------------------------------------
# Shared pieces


def _artifacts_root(run: RunLogger) -> Path:
    """``artifacts/`` beside the run's store (a sweep worker's in-memory run: beside the default store)."""
    store_path = run.store.path if isinstance(run, Run) else default_store_path()
    return store_path.parent / "artifacts"


def _run_checkpoint(run: RunLogger, reference: str) -> Path:
    """The checkpoint of the rlvr-pretrain / rlvr-train run ``run:ID`` in the same store."""
    if not isinstance(run, Run):
        raise ValueError(f"base: {reference!r} refers to a stored run; this run is not in a store")
    run_id = int(RUN_REFERENCE.fullmatch(reference).group(1))
    experiment = run.store.run_info(run_id)["experiment"]
    if experiment not in CHECKPOINT_NAMES:
        raise ValueError(f"base: run {run_id} is a {experiment!r} run, not one of {sorted(CHECKPOINT_NAMES)}")
    path = run.store.artifact_dir(run_id) / CHECKPOINT_NAMES[experiment]
    if not path.is_file():
        raise ValueError(f"base: run {run_id} has no checkpoint at {path}")
    return path


def _load(reference: str, task: Task, run: RunLogger, device: torch.device):
    path = _run_checkpoint(run, reference) if RUN_REFERENCE.fullmatch(reference) else Path(reference)
    model, meta = load_policy(path, device=device)
    if meta["task"] != task.name:
        raise ValueError(f"base: {reference!r} was trained on {meta['task']!r}, not {task.name!r}")
    return model


def load_base(cfg: BaseModelFields, run: RunLogger, task: Task, device: torch.device):
    """The base model of ``cfg`` (eval mode, on ``device``): cached, from a run, or from a file."""
    if cfg.base != "cached":
        return _load(cfg.base, task, run, device)
    model_config = task_config(task, n_layer=cfg.base_layers, n_head=cfg.base_heads, n_embd=cfg.base_width)
    cache = _artifacts_root(run) / BASE_CACHE
    model, _ = cached_base_model(
        task.name, cache, config=model_config, steps=cfg.base_steps, seed=cfg.base_seed, device=device
    )
    return model


def held_out_prompts(task: Task, n_prompts: int, eval_seed: int) -> list[str]:
    return task.sample_prompts(n_prompts, eval_seed, "test")


def stop_requested(progress, done: int, total: int) -> bool:
    """Report progress; True when the caller asked to stop (the body then saves before raising StopRequested)."""
    try:
        progress(done, total)
    except StopRequested:
        return True
    return False


def prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}{name}": value for name, value in metrics.items()}


# ---------------------------------------------------------------------------------------------------------------
# Bodies


def run_rlvr_pretrain(cfg: RLVRPretrainConfig, run: RunLogger, progress) -> None:
    """Item 1 of the module docstring."""
    task, device = make_task(cfg.task), torch_device(cfg.device)
    model_config = task_config(task, n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd)
    prompts = held_out_prompts(task, cfg.eval_prompts, cfg.eval_seed)
    minority = minority_prompts(task, prompts)
    checkpoint = run.artifact_dir / CHECKPOINT_NAMES["rlvr-pretrain"] if isinstance(run, Run) else None
    stopped = False

    def log_evaluation(model, step: int) -> None:
        report = evaluate_model(model, task, prompts, cfg.eval_samples, seed=cfg.eval_seed)
        run.log(step, iteration=step, **prefixed(evaluation_metrics(report, minority), "eval/"))

    def watch(state) -> bool:
        nonlocal stopped
        step = state.solver.step_count
        run.log(step, iteration=step, loss=state.metrics["loss"], lr=state.metrics["lr"])
        if cfg.eval_every and step % cfg.eval_every == 0:
            log_evaluation(state.solver.model, step)
        stopped = stop_requested(progress, step, cfg.steps)
        return stopped

    with torch_threads(cfg.threads or None):
        result = pretrain(
            task,
            model_config,
            steps=cfg.steps,
            seconds=cfg.seconds or None,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            warmup_steps=cfg.warmup_steps,
            seed=cfg.seed,
            checkpoint_path=checkpoint,
            checkpoint_every=cfg.checkpoint_every,
            device=device,
            callback=watch,
        )
        if stopped:
            raise StopRequested(f"stopped at step {result.step}/{cfg.steps}; resume continues from its checkpoint")
        if not cfg.eval_every or result.step % cfg.eval_every:
            log_evaluation(result.model, result.step)


def run_rlvr_train(cfg: RLVRTrainConfig, run: RunLogger, progress) -> None:
    """Item 2 of the module docstring."""
    task, device = make_task(cfg.task), torch_device(cfg.device)
    prompts = held_out_prompts(task, cfg.eval_prompts, cfg.eval_seed)
    minority = minority_prompts(task, prompts)
    checkpoint = run.artifact_dir / CHECKPOINT_NAMES["rlvr-train"] if isinstance(run, Run) else None
    stopped = False
    with torch_threads(cfg.threads or None):
        base = load_base(cfg, run, task, device)
        trainer = RLVRTrainer(copy.deepcopy(base), base, task, cfg.trainer_config(), checkpoint_path=checkpoint)

        def log_evaluation(step: int) -> None:
            report = trainer.evaluate(prompts, cfg.eval_samples, temperature=cfg.eval_temperature, seed=cfg.eval_seed)
            run.log(step, iteration=step, **prefixed(evaluation_metrics(report, minority), "eval/"))

        def watch(state) -> bool:
            nonlocal stopped
            step = trainer.step_count
            run.log(step, iteration=step, **state.metrics)
            if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
                log_evaluation(step)
            stopped = stop_requested(progress, step, cfg.steps)
            return stopped

        if cfg.eval_every and trainer.step_count == 0:
            log_evaluation(0)
        result = train_rlvr(trainer, callback=watch)
    if stopped:
        raise StopRequested(f"stopped at step {result.step}/{cfg.steps}; resume continues from its checkpoint")


def run_rlvr_eval(cfg: RLVREvalConfig, run: RunLogger, progress) -> None:
    """Item 3 of the module docstring."""
    task, device = make_task(cfg.task), torch_device(cfg.device)
    prompts = held_out_prompts(task, cfg.n_prompts, cfg.eval_seed)
    with torch_threads(cfg.threads or None):
        base = load_base(cfg, run, task, device)
        policy = base if cfg.policy == "base" else _load(cfg.policy, task, run, device)
        report = evaluate_model(
            policy,
            task,
            prompts,
            cfg.n_samples,
            temperature=cfg.temperature,
            seed=cfg.eval_seed,
            base_model=None if policy is base else base,
            n_boot=cfg.n_boot,
        )
    metrics = evaluation_metrics(report, minority_prompts(task, prompts))
    if policy is base:
        metrics |= {"kl_to_ref": 0.0, "kl_to_ref.stderr": 0.0}  # the base against itself, exactly
    run.log(0, n_prompts=len(prompts), n_samples=cfg.n_samples, **metrics)
    progress(1, 1)


register(
    "rlvr-pretrain",
    kind="llm",
    config=RLVRPretrainConfig,
    description="pretrain the tiny GPT on a verifiable task's corpus (the RLVR base model), with held-out pass@k",
    series=(
        Series("iteration", "loss", "answer cross-entropy (train)"),
        Series("iteration", "eval/pass@1", "held-out pass@1", mode="lines+markers"),
    ),
    axis_titles=("step", "loss (nats/token) / pass@1"),
    resumable=True,
)(run_rlvr_pretrain)

register(
    "rlvr-train",
    kind="llm",
    config=RLVRTrainConfig,
    description="RL with verifiable rewards on the tiny GPT: GRPO, Dr.GRPO, DAPO, RLOO, PPO, PACS, PSR/NSR, ROVER",
    series=(
        Series("iteration", "reward", "train reward (batch pass@1)"),
        Series("iteration", "eval/pass@1", "held-out pass@1", mode="lines+markers"),
        Series("iteration", "kl_to_ref", "KL to the base (nats per completion)"),
    ),
    axis_titles=("RL step", "reward / pass@1 / KL"),
    resumable=True,
)(run_rlvr_train)

register(
    "rlvr-eval",
    kind="llm",
    config=RLVREvalConfig,
    description="pass@k (k = 1..n, bootstrap intervals), minority breakdown, support, entropies, KL of one policy",
    resumable=False,
)(run_rlvr_eval)
