"""Pretraining the tiny GPT on a task's corpus: the base policy of the RLVR runs.

1. Step k draws ``batch_size`` (prompt, solution) pairs from :func:`lab.rlvr.tasks.pretraining_corpus` with the
   numpy seed (seed, k) and encodes each as prompt + solution + EOS (PAD on the right).
2. Loss: next-token cross-entropy of the policy (:func:`lab.rlvr.model.log_policy`) on the answer tokens only,
   L = -(1/N) sum_{i,t in answer} log pi(o_{i,t} | q_i, o_{i,<t}), N the number of answer tokens in the batch.
3. AdamW (betas 0.9, 0.95; weight decay on matrices and embeddings only, as nanoGPT), learning rate warmed up
   linearly over ``warmup_steps``, then constant; gradient norm clipped at 1.
4. Every ``checkpoint_every`` steps and at the end the run is saved atomically (tmp file, then ``os.replace``):
   config, weights, optimizer state, task name, vocabulary, seed, step, settings, history. A run started on an
   existing checkpoint resumes from its step. Since the batch of step k depends only on (seed, k) (and dropout, if
   any, is reseeded per step), a resumed run ends with the same parameters as an uninterrupted one (same device,
   same thread count).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lab.rlvr.checkpoints import check_same_run, cpu_state, write_atomically
from lab.rlvr.model import GPT, GPTConfig, log_policy, sample
from lab.rlvr.tasks import VOCAB, Task, _check_int, make_task, pretraining_corpus
from lab.torch_utils import torch_threads
from theory.solver import Callback, IterationState, SolverResult, iterate

CHECKPOINT_FORMAT = "lab.rlvr.pretrain/1"
HISTORY_KEYS = ("loss", "lr", "train_seconds")


def task_config(task: Task, *, n_layer: int = 4, n_head: int = 4, n_embd: int = 128, dropout: float = 0.0) -> GPTConfig:
    """A GPTConfig sized for ``task``: block_size = prompt_length + max_completion_length."""
    return GPTConfig(
        vocab_size=VOCAB.size,
        block_size=task.prompt_length + task.max_completion_length,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        dropout=dropout,
    )


def _resolve_task(task) -> Task:
    if isinstance(task, str):
        return make_task(task)
    if not all(hasattr(task, name) for name in ("name", "sample_examples", "prompt_length", "max_completion_length")):
        raise TypeError(f"task: expected a task name or a lab.rlvr.tasks Task, got {type(task).__name__}")
    return task


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if not 0 < value < math.inf:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


def torch_device(device) -> torch.device:
    """``"auto"``: CUDA when present, else the CPU; anything else as ``torch.device`` reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def encode_examples(task: Task, examples, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt, solution) pairs -> ids (B, Lp + max_completion_length) of prompt + solution + EOS + PAD and the
    loss mask (B, width - 1) of the positions whose next token is an answer token (solution or EOS)."""
    width = task.prompt_length + task.max_completion_length
    ids = np.full((len(examples), width), VOCAB.pad_id, dtype=np.int64)
    for row, (prompt, solution) in enumerate(examples):
        text = VOCAB.encode(prompt + solution) + [VOCAB.eos_id]
        if len(prompt) != task.prompt_length or len(text) > width:
            raise ValueError(f"examples: ({prompt!r}, {solution!r}) does not fit {task.name}'s widths")
        ids[row, : len(text)] = text
    ids = torch.as_tensor(ids, device=device)
    targets = ids[:, 1:]
    answer = torch.arange(width - 1, device=ids.device) >= task.prompt_length - 1
    return ids, (answer & (targets != VOCAB.pad_id)).float()


def answer_loss(model: GPT, ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Mean -log pi of the answer tokens (module docstring, item 2)."""
    log_probs = log_policy(model(ids[:, :-1]))
    token_logp = log_probs.gather(2, ids[:, 1:, None]).squeeze(2)
    return -(token_logp * loss_mask).sum() / loss_mask.sum()


class Pretrainer:
    """Stepped pretraining (module docstring). ``step()`` returns ``loss`` (of the batch, before the update),
    ``lr`` and ``train_seconds`` (cumulative over resumed sessions). Accessors: ``model``, ``step_count``,
    ``history`` (every step since the start of the run, resumed ones included), ``settings``."""

    def __init__(
        self,
        task,
        config: GPTConfig | None = None,
        *,
        batch_size: int = 64,
        lr: float = 2e-3,
        weight_decay: float = 0.1,
        warmup_steps: int = 50,
        seed: int = 0,
        strategy_mix=None,
        checkpoint_path: str | os.PathLike | None = None,
        checkpoint_every: int = 200,
        device="cpu",
    ) -> None:
        self.task = _resolve_task(task)
        config = task_config(self.task) if config is None else config
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config: expected a GPTConfig or None, got {type(config).__name__}")
        if (
            config.vocab_size != VOCAB.size
            or config.block_size < self.task.prompt_length + self.task.max_completion_length
        ):
            raise ValueError(f"config: expected vocab_size {VOCAB.size} and a block_size fitting {self.task.name}")
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, int | float) or not 0 <= weight_decay < 1:
            raise ValueError(f"weight_decay: expected a number in [0, 1), got {weight_decay!r}")
        self.config, self.seed = config, _check_int(seed, "seed", minimum=0)
        self.checkpoint_every = _check_int(checkpoint_every, "checkpoint_every")
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.settings = {
            "batch_size": _check_int(batch_size, "batch_size"),
            "lr": _positive(lr, "lr"),
            "weight_decay": float(weight_decay),
            "warmup_steps": _check_int(warmup_steps, "warmup_steps", minimum=0),
            "strategy_mix": None if strategy_mix is None else [float(w) for w in strategy_mix],
        }
        self.device = torch_device(device)
        self.model = GPT(config, seed=seed).to(self.device)
        matrices = [p for p in self.model.parameters() if p.ndim >= 2]
        vectors = [p for p in self.model.parameters() if p.ndim < 2]
        self._optimizer = torch.optim.AdamW(
            [{"params": matrices, "weight_decay": float(weight_decay)}, {"params": vectors, "weight_decay": 0.0}],
            lr=self.settings["lr"],
            betas=(0.9, 0.95),
            fused=True,
        )
        self.step_count = 0
        self.train_seconds = 0.0
        self.history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            self._resume(torch.load(self.checkpoint_path, map_location="cpu", weights_only=True))

    @property
    def converged(self) -> bool:
        return False  # a budgeted run: no stopping test

    def _resume(self, checkpoint: dict) -> None:
        expected = {
            "task": self.task.name,
            "vocab": list(VOCAB.tokens),
            "config": asdict(self.config),
            "seed": self.seed,
            "settings": self.settings,
        }
        check_same_run(checkpoint, self.checkpoint_path, checkpoint_format=CHECKPOINT_FORMAT, expected=expected)
        self.model.load_state_dict(checkpoint["model"])
        self._optimizer.load_state_dict(checkpoint["optimizer"])
        self.step_count = checkpoint["step"]
        self.train_seconds = checkpoint["train_seconds"]
        self.history = {key: list(checkpoint["history"][key]) for key in HISTORY_KEYS}

    def _learning_rate(self) -> float:
        warmup = self.settings["warmup_steps"]
        scale = 1.0 if self.step_count >= warmup else (self.step_count + 1) / warmup
        return self.settings["lr"] * scale

    def step(self) -> dict[str, float]:
        start = time.perf_counter()
        lr = self._learning_rate()
        for group in self._optimizer.param_groups:
            group["lr"] = lr
        examples = list(
            pretraining_corpus(
                self.task,
                self.settings["batch_size"],
                np.random.default_rng([self.seed, self.step_count]),
                strategy_mix=self.settings["strategy_mix"],
            )
        )
        ids, loss_mask = encode_examples(self.task, examples, self.device)
        self.model.train()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed * 1_000_003 + self.step_count)  # dropout draws depend on (seed, step) only
            loss = answer_loss(self.model, ids, loss_mask)
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self._optimizer.step()
        self.step_count += 1
        self.train_seconds += time.perf_counter() - start
        metrics = {"loss": loss.item(), "lr": lr, "train_seconds": self.train_seconds}
        for key in HISTORY_KEYS:
            self.history[key].append(metrics[key])
        if self.checkpoint_path is not None and self.step_count % self.checkpoint_every == 0:
            self.save()
        return metrics

    def save(self, *, finished: bool = False) -> None:
        """Write the checkpoint atomically (a tmp file beside it, then ``os.replace``)."""
        if self.checkpoint_path is None:
            raise ValueError("checkpoint_path: this run was started without one")
        payload = {
            "format": CHECKPOINT_FORMAT,
            "task": self.task.name,
            "vocab": list(VOCAB.tokens),
            "config": asdict(self.config),
            "seed": self.seed,
            "settings": self.settings,
            "step": self.step_count,
            "train_seconds": self.train_seconds,
            "finished": finished,
            "history": self.history,
            "model": cpu_state(self.model),
            "optimizer": self._optimizer.state_dict(),
        }
        write_atomically(payload, self.checkpoint_path)


@dataclass(frozen=True, kw_only=True)
class PretrainResult(SolverResult):
    """``model`` the trained GPT (eval mode), ``task`` its task's name, ``step`` steps done in total (resumed ones
    included), ``loss`` of the last step, ``train_seconds`` in total, ``checkpoint_path`` (or None); ``history``
    covers every step of the run, resumed sessions included."""

    model: GPT
    task: str
    step: int
    loss: float
    train_seconds: float
    checkpoint_path: str | None


def pretrain(
    task,
    config: GPTConfig | None = None,
    *,
    steps: int | None = None,
    seconds: float | None = None,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 0.1,
    warmup_steps: int = 50,
    seed: int = 0,
    strategy_mix=None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 200,
    device="cpu",
    num_threads: int | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    callback_every: int = 1,
) -> PretrainResult:
    """Pretrain a GPT on ``task`` (a Task or its name) until ``steps`` steps in total or ``seconds`` training
    seconds in total (whichever comes first; at least one is required), resuming from ``checkpoint_path`` when it
    exists. ``callback(state)`` returning True stops the run; the checkpoint is saved on every way out of the loop
    but an exception. ``device``: "cpu", "cuda", "auto" or a torch.device; ``num_threads``: torch threads while
    training (None: unchanged)."""
    if steps is None and seconds is None:
        raise ValueError("steps: expected a step budget, or a seconds budget, or both; got neither")
    steps = None if steps is None else _check_int(steps, "steps")
    seconds = None if seconds is None else _positive(seconds, "seconds")
    callback_every = _check_int(callback_every, "callback_every")
    with torch_threads(num_threads):
        trainer = Pretrainer(
            task,
            config,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            seed=seed,
            strategy_mix=strategy_mix,
            checkpoint_path=checkpoint_path,
            checkpoint_every=checkpoint_every,
            device=device,
        )
        start_step = trainer.step_count
        remaining = None if steps is None else steps - start_step
        stopped_by_callback = False

        def watch(state: IterationState) -> bool:
            nonlocal stopped_by_callback
            out_of_time = seconds is not None and trainer.train_seconds >= seconds
            if callback is not None and (
                state.n_iter % callback_every == 0 or out_of_time or state.n_iter == remaining
            ):
                try:
                    stopped_by_callback = bool(callback(state))
                except StopIteration:
                    stopped_by_callback = True
            return stopped_by_callback or out_of_time

        budget_left = (remaining is None or remaining > 0) and (seconds is None or trainer.train_seconds < seconds)
        if budget_left:
            iterate(trainer, max_iter=remaining or 10**12, callback=watch, progress=progress)
        finished = not stopped_by_callback and (steps is None or trainer.step_count >= steps)
        if trainer.checkpoint_path is not None:
            trainer.save(finished=finished)
    trainer.model.eval()
    done = trainer.step_count - start_step
    if stopped_by_callback:
        message = f"stopped by callback at step {trainer.step_count}"
    else:
        message = f"budget reached at step {trainer.step_count} ({trainer.train_seconds:.1f} training seconds)"
    if start_step:
        message += f"; resumed from step {start_step}"
    return PretrainResult(
        converged=False,
        n_iter=done,
        message=message,
        history={key: np.asarray(values, dtype=float) for key, values in trainer.history.items()},
        model=trainer.model,
        task=trainer.task.name,
        step=trainer.step_count,
        loss=trainer.history["loss"][-1] if trainer.history["loss"] else math.nan,
        train_seconds=trainer.train_seconds,
        checkpoint_path=None if checkpoint_path is None else str(checkpoint_path),
    )


def load_checkpoint(path: str | os.PathLike, *, device="cpu") -> tuple[GPT, dict]:
    """The GPT (eval mode, on ``device``) and the checkpoint's metadata (everything but weights and optimizer)."""
    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"path: {path} is not a {CHECKPOINT_FORMAT} checkpoint")
    if list(checkpoint["vocab"]) != list(VOCAB.tokens):
        raise ValueError(f"path: {path} was trained with another vocabulary {checkpoint['vocab']}")
    model = GPT(GPTConfig(**checkpoint["config"]), seed=checkpoint["seed"])
    model.load_state_dict(checkpoint["model"])
    meta = {key: value for key, value in checkpoint.items() if key not in ("model", "optimizer")}
    return model.to(torch_device(device)).eval(), meta


DEFAULT_BASE = {"steps": 1000, "batch_size": 64, "lr": 2e-3, "seed": 0}
"""Defaults of the cached base model: on Countdown-lite, 1000 steps of the 4-layer, width-128 GPT took ~115 s on one
CPU thread (a loaded 2-core machine) and gave pass@1 ~0.5 at temperature 1 on held-out prompts."""


def cached_base_model(
    task_name: str,
    cache_dir: str | os.PathLike,
    *,
    config: GPTConfig | None = None,
    steps: int = DEFAULT_BASE["steps"],
    batch_size: int = DEFAULT_BASE["batch_size"],
    lr: float = DEFAULT_BASE["lr"],
    seed: int = DEFAULT_BASE["seed"],
    device="cpu",
    num_threads: int | None = None,
    progress: bool = False,
) -> tuple[GPT, dict]:
    """The base model of ``task_name`` pretrained with these settings: loaded from ``cache_dir`` when a finished
    checkpoint exists there, otherwise pretrained (resuming a partial one) and cached. The file name carries a hash
    of the settings, so other settings get another file."""
    task = make_task(task_name)
    config = task_config(task) if config is None else config
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config: expected a GPTConfig or None, got {type(config).__name__}")
    settings = {"task": task.name, "config": asdict(config)}
    settings |= {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "vocab": list(VOCAB.tokens)}
    settings["device"] = torch_device(device).type
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{task.name}-{digest}.pt"
    if path.exists():
        model, meta = load_checkpoint(path, device=device)
        if meta["finished"] and meta["step"] == steps:
            return model, meta
    pretrain(
        task,
        config,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        checkpoint_path=path,
        device=device,
        num_threads=num_threads,
        progress=progress,
    )
    return load_checkpoint(path, device=device)


def success_rates(
    model: GPT,
    task: Task,
    prompts,
    *,
    group_size: int = 16,
    temperature: float = 1.0,
    seed: int = 0,
    prompts_per_batch: int = 64,
) -> np.ndarray:
    """Per prompt, the fraction of ``group_size`` sampled completions that ``task.verify`` accepts (its mean over
    prompts is a plain pass@1 estimate; :mod:`lab.rlvr.eval` has the pass@k estimators)."""
    prompts = list(prompts)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    rates = []
    model.eval()
    for first in range(0, len(prompts), prompts_per_batch):
        chunk = prompts[first : first + prompts_per_batch]
        samples = sample(
            model,
            torch.as_tensor(VOCAB.encode_batch(chunk), device=model.device),
            group_size,
            task.max_completion_length,
            temperature=temperature,
            generator=generator,
        )
        texts = VOCAB.decode_batch(samples.tokens.cpu())
        rewards = [task.verify(chunk[i // group_size], text) for i, text in enumerate(texts)]
        rates.append(np.asarray(rewards).reshape(len(chunk), group_size).mean(axis=1))
    return np.concatenate(rates)
