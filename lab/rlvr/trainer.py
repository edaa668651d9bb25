"""The RLVR trainer: one loop for every objective of :mod:`lab.rlvr.objectives`, held-out evaluation, exact resume.

1. Step k (:meth:`RLVRTrainer.step`, k = 0, 1, ...): P distinct train prompts drawn with the numpy seed
   (seed, k, 0), run once with grad (:func:`lab.rlvr.model.prompt_prefix`); G completions per prompt from the
   KV-cache sampler (:func:`lab.rlvr.model.sample`: the prompt's K/V shared by its G rows) with a torch generator
   seeded from (seed, k, 1); verifier rewards r_i = task.verify(q, o_i).
2. logp = log pi_theta(o_t | q, o_<t) (and the vocabulary mean of log pi, for ROVER only) are the sampler's own:
   the loss's gradient with respect to them goes down the network through the sampler's recorded activations
   (:mod:`lab.rlvr.tape`, ``backward_through_sampler``), with no second forward of the completions; so are the
   final hidden states h of PPO's value head V = w^T h + b (detached: the critic's loss trains the head alone, as a
   separate critic would, and never moves the policy's trunk). With ``backward_through_sampler=False`` one
   scoring forward with grad computes them again (:func:`lab.rlvr.model.score`: the completions continue the
   prompt forward of item 1, positions past a completion's end skipped; for PPO every position,
   :func:`score_with_states`). One update per batch, so pi_old = pi_theta at the start of the step: old_logp =
   the sampler's recorded log-probs (the untempered policy at temperature 1, which is what re-scoring would return
   at any sampling temperature, so no extra forward), old_values / old_mean_logp = the current ones detached;
   ratios are 1 (up to rounding when scoring again). ref_logp = log pi_base under the frozen base model, without
   grad, when the objective needs it (beta / kl_coef > 0) or ``track_kl`` asks for the KL metric.
3. loss = OBJECTIVES[objective](PolicyBatch, **hyperparameters); backward; the policy's gradient norm clipped at
   ``grad_clip`` (the value head's separately); AdamW at a constant learning rate (the value head in its own group
   at ``value_lr``).
   The policy runs in eval mode throughout (no dropout, as TRL's ``disable_dropout``).
4. Metrics (shared names): ``reward`` = ``pass@1`` (the batch's mean verifier reward, i.e. train pass@1 at
   temperature ``temperature``), ``kl_to_ref`` = mean over completions of sum_t k3(logp, ref_logp): an unbiased
   estimate of the sequence-level KL(pi_theta || pi_base) in nats per completion (the quantity
   :func:`lab.rlvr.eval.kl_to_base` estimates on held-out prompts), present when ref_logp was computed;
   ``entropy`` = token mean of -log pi_old(o_t) on the sampled tokens (unbiased for the mean next-token entropy at
   temperature 1, a proxy otherwise); ``loss``, ``completion_length``, ``grad_norm`` (before clipping), the
   objective's own stats as ``{objective}/{name}``, and the wall-clock numbers :data:`TIMING_METRICS`.
5. Checkpoints (:meth:`RLVRTrainer.save`, atomic: tmp file then ``os.replace``) hold the policy, the optimizer,
   the value head, the step, the history and the config. No random state is carried from one step to the next:
   every draw of step k comes from generators seeded by (seed, k), so (seed, step) *is* the complete RNG state and
   a run killed and resumed from its checkpoint ends with the same metrics and parameters as an uninterrupted run
   (same device and thread count).
6. :func:`evaluate_model`: n samples per held-out prompt, pass@k curves with bootstrap intervals over prompts,
   empirical support, answer- and exact token-level entropy, strategy usage and KL to the base model
   (:func:`lab.rlvr.eval.evaluate`); :func:`evaluation_metrics` flattens a report (and the minority/majority split
   of Countdown-lite) into loggable scalars.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lab.rlvr.checkpoints import check_same_run, cpu_state, write_atomically
from lab.rlvr.eval import EvaluationReport, evaluate, minority_breakdown
from lab.rlvr.model import GPT, GPTConfig, SharedPrefix, log_policy, prompt_prefix, sample, score
from lab.rlvr.objectives import OBJECTIVES, PolicyBatch, k3_kl, needs
from lab.rlvr.pretrain import CHECKPOINT_FORMAT as PRETRAIN_FORMAT
from lab.rlvr.pretrain import load_checkpoint
from lab.rlvr.tape import DecodeTape, backward_from_leaves, policy_leaves, tape_states
from lab.rlvr.tasks import VOCAB, Task
from lab.torch_utils import positive_int, torch_threads
from theory.solver import Callback, IterationState, SolverResult, iterate

CHECKPOINT_FORMAT = "lab.rlvr.trainer/1"
TIMING_METRICS = ("step_seconds", "sample_seconds", "tokens_per_second")
"""Wall-clock metrics: the only logged values that differ between two runs with the same seed."""
RESUME_INVARIANT_FIELDS = ("steps", "checkpoint_every", "num_threads", "backward_through_sampler")
"""Config fields a resumed run may change: they do not alter the trajectory (beyond float rounding: a resumed run
is bit-identical to an uninterrupted one when these are the same too)."""


def _real(value, name: str, *, low: float = -math.inf, high: float = math.inf, open_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if value < low or value > high or (open_low and value == low):
        bound = f"{'>' if open_low else '>='} {low}" + ("" if high == math.inf else f" and <= {high}")
        raise ValueError(f"{name}: expected a number {bound}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class TrainerConfig:
    """Everything that defines an RLVR run besides the models and the task (module docstring)."""

    objective: str = "grpo"
    """A name of :data:`lab.rlvr.objectives.OBJECTIVES`."""
    hyperparameters: Mapping[str, float | int | bool] = field(default_factory=dict)
    """Keyword arguments of the objective (e.g. ``{"beta": 0.04}``); the objective's defaults otherwise. Dr.GRPO's
    ``max_length`` defaults to ``max_new_tokens`` (TRL's constant ``max_completion_length``)."""
    prompts_per_step: int = 8
    group_size: int = 8
    """G completions per prompt (TRL ``num_generations``)."""
    max_new_tokens: int | None = None
    """None: the task's ``max_completion_length``."""
    temperature: float = 1.0
    top_k: int | None = None
    lr: float = 3e-5
    """3e-5 measured best for GRPO on the 4-layer d=128 GPT (1e-4 too large): notes/rlvr.md, Appendix."""
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    """Applied to matrices and embeddings only (0: TRL's default)."""
    grad_clip: float = 1.0
    value_lr: float = 1e-3
    """PPO value head learning rate (a fresh linear head: larger than the policy's, as verl's critic)."""
    track_kl: bool = True
    """Score under the base model every step for ``kl_to_ref`` even when the objective does not need it."""
    steps: int = 200
    checkpoint_every: int = 50
    seed: int = 0
    num_threads: int | None = None
    """torch threads inside :func:`train_rlvr` (None: unchanged)."""
    backward_through_sampler: bool = True
    """Differentiate through the sampler's own activations (:mod:`lab.rlvr.tape`), with no scoring forward; False:
    score the samples again with grad (the same gradient to float rounding, one forward more)."""

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective: expected one of {sorted(OBJECTIVES)}, got {self.objective!r}")
        if not isinstance(self.hyperparameters, Mapping):
            raise TypeError(f"hyperparameters: expected a mapping, got {type(self.hyperparameters).__name__}")
        allowed = list(inspect.signature(OBJECTIVES[self.objective]).parameters)[1:]
        for name, value in self.hyperparameters.items():
            if name not in allowed:
                raise ValueError(f"hyperparameters: {self.objective} takes {allowed}, got {name!r}")
            if not isinstance(value, bool | int | float):
                raise TypeError(f"hyperparameters: {name} must be a number or a bool, got {value!r}")
        for name in ("prompts_per_step", "group_size", "steps", "checkpoint_every"):
            positive_int(getattr(self, name), name)
        for name in ("max_new_tokens", "top_k", "num_threads"):
            if getattr(self, name) is not None:
                positive_int(getattr(self, name), name)
        _real(self.temperature, "temperature", low=0.0, open_low=True)
        for name in ("lr", "grad_clip", "value_lr"):
            _real(getattr(self, name), name, low=0.0, open_low=True)
        _real(self.weight_decay, "weight_decay", low=0.0)
        if len(self.betas) != 2:
            raise ValueError(f"betas: expected two numbers in [0, 1), got {self.betas!r}")
        for beta in self.betas:
            if _real(beta, "betas", low=0.0) >= 1:
                raise ValueError(f"betas: expected two numbers in [0, 1), got {self.betas!r}")
        for name in ("track_kl", "backward_through_sampler"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}: expected a bool, got {getattr(self, name)!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {self.seed!r}")
        _check_objective_call(self.objective, dict(self.hyperparameters), self.group_size)

    @property
    def required(self) -> set[str]:
        """The optional PolicyBatch tensors the objective needs (:func:`lab.rlvr.objectives.needs`)."""
        return needs(self.objective, **self.hyperparameters)


def _check_objective_call(objective: str, hyperparameters: dict, group_size: int) -> None:
    """Call the objective once on a G x 1 batch so that bad values fail now, with the objective's message."""
    required = needs(objective, **hyperparameters)
    zeros = torch.zeros(group_size, 1)
    optional = {name: zeros for name in required}
    rewards = (torch.arange(group_size) % 2 == 0).float()
    batch = PolicyBatch(
        logp=zeros, old_logp=zeros, mask=torch.ones(group_size, 1), rewards=rewards, group_size=group_size, **optional
    )
    if objective == "dr_grpo":
        hyperparameters.setdefault("max_length", 1)
    OBJECTIVES[objective](batch, **hyperparameters)


@contextmanager
def _output_layer_inputs(model: GPT):
    """Collect the inputs of ``model.lm_head``: the final hidden states whose logits a forward reads."""
    captured: list[torch.Tensor] = []
    handle = model.lm_head.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        yield captured
    finally:
        handle.remove()


def score_with_states(
    model: GPT,
    prompts: torch.Tensor,
    completions: torch.Tensor,
    mask: torch.Tensor,
    *,
    with_mean_logp: bool = False,
    prefix: SharedPrefix | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """:func:`lab.rlvr.model.score` (every position computed) plus the final hidden states h (B, T, n_embd), h_t
    being the state whose logits give log pi(o_t | q, o_<t) (the value head's input). One forward: the states are
    read off the output layer."""
    with _output_layer_inputs(model) as inputs:
        logp, mean_logp = score(
            model, prompts, completions, mask, with_mean_logp=with_mean_logp, skip_padding=False, prefix=prefix
        )
    (states,) = inputs
    if states.shape[:2] != completions.shape:
        raise RuntimeError(f"score read {tuple(states.shape[:2])} output states for {tuple(completions.shape)} tokens")
    return logp, mean_logp, states


def check_policy_and_base(model: GPT, base_model: GPT) -> None:
    """Both GPTs, and the base a separate model of the same shape on the same device (it stays the reference)."""
    for name, value in (("model", model), ("base_model", base_model)):
        if not isinstance(value, GPT):
            raise TypeError(f"{name}: expected a lab.rlvr.model.GPT, got {type(value).__name__}")
    if base_model is model or base_model.config != model.config or base_model.device != model.device:
        raise ValueError("base_model: expected a separate GPT with the policy's config, on the policy's device")


def completion_budget(task: Task, model: GPT, max_new_tokens: int | None) -> int:
    """``max_new_tokens`` (None: the task's ``max_completion_length``), checked to fit the model's block."""
    budget = max_new_tokens or task.max_completion_length
    if task.prompt_length + budget - 1 > model.config.block_size:
        raise ValueError(
            f"config: prompt length {task.prompt_length} + max_new_tokens {budget} - 1 exceeds the "
            f"model's block_size {model.config.block_size}"
        )
    return budget


def _step_seeds(seed: int, step: int) -> tuple[np.random.Generator, int]:
    """The prompt generator and the torch sampling seed of step ``step``: functions of (seed, step) only."""
    sampling_seed = int(np.random.SeedSequence([seed, step, 1]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return np.random.default_rng([seed, step, 0]), sampling_seed


def _encode_prompts(prompts: Sequence[str], device) -> torch.Tensor:
    return torch.as_tensor(VOCAB.encode_batch(list(prompts)), device=device)


def _verify(task: Task, prompts: Sequence[str], tokens: torch.Tensor, group_size: int) -> tuple[list[str], list[float]]:
    texts = VOCAB.decode_batch(tokens.cpu())
    return texts, [task.verify(prompts[row // group_size], text) for row, text in enumerate(texts)]


class RLVRTrainer:
    """Stepped RLVR (module docstring). ``model`` is trained in place; ``base_model`` (the reference) is frozen.

    With ``checkpoint_path`` the trainer saves every ``checkpoint_every`` steps, and an existing checkpoint there is
    loaded (policy, optimizer, value head, step, history) so that stepping continues the run it came from.
    Accessors: ``model``, ``value_head`` (None unless PPO), ``step_count``, ``history`` (every step of the run,
    resumed sessions included), ``config``.
    """

    def __init__(
        self,
        model: GPT,
        base_model: GPT,
        task: Task,
        config: TrainerConfig | None = None,
        *,
        checkpoint_path: str | os.PathLike | None = None,
    ) -> None:
        config = TrainerConfig() if config is None else config
        if not isinstance(config, TrainerConfig):
            raise TypeError(f"config: expected a TrainerConfig, got {type(config).__name__}")
        check_policy_and_base(model, base_model)
        if not all(hasattr(task, name) for name in ("verify", "sample_prompts", "prompt_length", "name")):
            raise TypeError(f"task: expected a lab.rlvr.tasks Task, got {type(task).__name__}")
        self.max_new_tokens = completion_budget(task, model, config.max_new_tokens)
        if not any(parameter.requires_grad for parameter in model.parameters()):
            raise ValueError("model: expected trainable parameters (requires_grad), got none")
        self.model, self.base_model, self.task, self.config = model.eval(), base_model.eval(), task, config
        self._required = config.required
        self._hyperparameters = dict(config.hyperparameters)
        if config.objective == "dr_grpo":
            self._hyperparameters.setdefault("max_length", self.max_new_tokens)
        self.value_head = None
        if "values" in self._required:
            self.value_head = nn.Linear(model.config.n_embd, 1).to(model.device)
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)
        matrices = [p for p in model.parameters() if p.ndim >= 2]
        vectors = [p for p in model.parameters() if p.ndim < 2]
        groups = [
            {"params": matrices, "weight_decay": config.weight_decay},
            {"params": vectors, "weight_decay": 0.0},
        ]
        if self.value_head is not None:
            groups.append({"params": list(self.value_head.parameters()), "weight_decay": 0.0, "lr": config.value_lr})
        self._optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), fused=True)
        self.step_count = 0
        self.history: dict[str, list[float]] = {}
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            self._resume(torch.load(self.checkpoint_path, map_location="cpu", weights_only=True))

    @property
    def converged(self) -> bool:
        return False  # a budgeted run: no stopping test

    def step(self) -> dict[str, float]:
        """One rollout batch and one update (module docstring, items 1-4)."""
        config, G = self.config, self.config.group_size
        start = time.perf_counter()
        prompt_rng, sampling_seed = _step_seeds(config.seed, self.step_count)
        prompts = self.task.sample_prompts(config.prompts_per_step, prompt_rng, "train")
        prompt_ids = _encode_prompts(prompts, self.model.device)
        prefix = prompt_prefix(self.model, prompt_ids)  # with grad: the loss's prompt forward, shared with sampling
        tape = DecodeTape() if config.backward_through_sampler else None
        samples = sample(
            self.model,
            prompt_ids,
            G,
            self.max_new_tokens,
            temperature=config.temperature,
            top_k=config.top_k,
            generator=torch.Generator(device=self.model.device).manual_seed(sampling_seed),
            prefix=prefix,
            tape=tape,
        )
        _, rewards = _verify(self.task, prompts, samples.tokens, G)
        sample_seconds = time.perf_counter() - start
        rewards = torch.tensor(rewards, dtype=samples.logp.dtype, device=samples.logp.device)
        tokens, mask = samples.tokens, samples.mask

        with_mean_logp = "mean_logp" in self._required
        if tape is not None:  # the sampler's own log-probs and states: no scoring forward
            logp, mean_logp = policy_leaves(tape, samples.logp, with_mean_logp=with_mean_logp)
            states = tape_states(tape, tokens.shape) if self.value_head is not None else None
        elif self.value_head is None:
            logp, mean_logp = score(self.model, prompt_ids, tokens, mask, with_mean_logp=with_mean_logp, prefix=prefix)
        else:
            logp, mean_logp, states = score_with_states(
                self.model, prompt_ids, tokens, mask, with_mean_logp=with_mean_logp, prefix=prefix
            )
        optional = {}
        if mean_logp is not None:
            optional |= {"mean_logp": mean_logp, "old_mean_logp": mean_logp.detach()}
        if self.value_head is not None:
            values = self.value_head(states.detach()).squeeze(-1)
            optional |= {"values": values, "old_values": values.detach()}
        ref_logp = None
        if "ref_logp" in self._required or config.track_kl:
            with torch.no_grad():
                ref_logp, _ = score(self.base_model, prompt_ids, tokens, mask)
            if "ref_logp" in self._required:
                optional["ref_logp"] = ref_logp
        batch = PolicyBatch(logp=logp, old_logp=samples.logp, mask=mask, rewards=rewards, group_size=G, **optional)
        output = OBJECTIVES[config.objective](batch, **self._hyperparameters)
        self._optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        if tape is not None:
            backward_from_leaves(tape, logp, mean_logp)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        if self.value_head is not None:  # clipped on its own, as a separate critic: it never rescales the policy
            torch.nn.utils.clip_grad_norm_(self.value_head.parameters(), config.grad_clip)
        self._optimizer.step()
        self.step_count += 1

        step_seconds = time.perf_counter() - start
        n_tokens = float(mask.sum())
        metrics = {
            "reward": float(rewards.mean()),
            "pass@1": float(rewards.mean()),
            "entropy": float(-(samples.logp * mask).sum() / n_tokens),
            "loss": float(output.loss.detach()),
            "completion_length": n_tokens / tokens.shape[0],
            "grad_norm": float(grad_norm),
        }
        if ref_logp is not None:
            metrics["kl_to_ref"] = float((k3_kl(logp.detach(), ref_logp) * mask).sum(dim=1).mean())
        metrics |= {f"{config.objective}/{name}": value for name, value in output.stats.items()}
        metrics |= {
            "step_seconds": step_seconds,
            "sample_seconds": sample_seconds,
            "tokens_per_second": n_tokens / step_seconds,
        }
        self._record(metrics)
        if self.checkpoint_path is not None and self.step_count % config.checkpoint_every == 0:
            self.save()
        return metrics

    def _record(self, metrics: Mapping[str, float]) -> None:
        """Append one step to ``history``; a metric first seen late is padded with NaN (as theory.solver.History)."""
        for name, value in metrics.items():
            self.history.setdefault(name, [math.nan] * (self.step_count - 1)).append(value)
        for column in self.history.values():
            if len(column) < self.step_count:
                column.append(math.nan)

    def evaluate(self, prompts: Sequence[str], n_samples: int, **options) -> EvaluationReport:
        """:func:`evaluate_model` of the current policy with KL to this trainer's base model."""
        options.setdefault("max_new_tokens", self.max_new_tokens)
        return evaluate_model(self.model, self.task, prompts, n_samples, base_model=self.base_model, **options)

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def _payload(self, finished: bool) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "task": self.task.name,
            "vocab": list(VOCAB.tokens),
            "model_config": asdict(self.model.config),
            "config": _config_record(self.config),
            "step": self.step_count,
            "rng": {"seed": self.config.seed, "next_step": self.step_count},
            "finished": finished,
            "history": self.history,
            "model": cpu_state(self.model),
            "value_head": None if self.value_head is None else cpu_state(self.value_head),
            "optimizer": self._optimizer.state_dict(),
        }

    def save(self, path: str | os.PathLike | None = None, *, finished: bool = False) -> Path:
        """Write the checkpoint atomically (tmp file beside it, then ``os.replace``) to ``path`` (default: the
        trainer's ``checkpoint_path``); returns the path."""
        path = self.checkpoint_path if path is None else Path(path)
        if path is None:
            raise ValueError("path: this trainer has no checkpoint_path; pass one")
        return write_atomically(self._payload(finished), path)

    def _resume(self, checkpoint: dict) -> None:
        expected = {
            "task": self.task.name,
            "vocab": list(VOCAB.tokens),
            "model_config": asdict(self.model.config),
            "config": _trajectory_fields(_config_record(self.config)),
        }
        check_same_run(
            checkpoint, self.checkpoint_path, checkpoint_format=CHECKPOINT_FORMAT, expected=expected,
            normalise_config=_trajectory_fields,
        )  # fmt: skip
        self.model.load_state_dict(checkpoint["model"])
        if self.value_head is not None:
            self.value_head.load_state_dict(checkpoint["value_head"])
        self._optimizer.load_state_dict(checkpoint["optimizer"])
        self.step_count = checkpoint["step"]
        self.history = {name: list(values) for name, values in checkpoint["history"].items()}


def _config_record(config: TrainerConfig) -> dict:
    record = asdict(config)
    record["hyperparameters"] = dict(config.hyperparameters)
    record["betas"] = list(config.betas)
    return record


def _trajectory_fields(record: Mapping) -> dict:
    return {key: value for key, value in record.items() if key not in RESUME_INVARIANT_FIELDS}


def load_policy(path: str | os.PathLike, *, device="cpu") -> tuple[GPT, dict]:
    """The GPT (eval mode) of a trainer checkpoint (its policy) or of a pretraining checkpoint (the base), with the
    checkpoint's metadata (everything but weights and optimizer state)."""
    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    if isinstance(checkpoint, dict) and checkpoint.get("format") == PRETRAIN_FORMAT:
        return load_checkpoint(path, device=device)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"path: {path} is neither a {CHECKPOINT_FORMAT} nor a {PRETRAIN_FORMAT} checkpoint")
    if list(checkpoint["vocab"]) != list(VOCAB.tokens):
        raise ValueError(f"path: {path} was trained with another vocabulary {checkpoint['vocab']}")
    model = GPT(GPTConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    meta = {key: value for key, value in checkpoint.items() if key not in ("model", "optimizer", "value_head")}
    return model.to(device).eval(), meta


@dataclass(frozen=True, kw_only=True)
class RLVRResult(SolverResult):
    """``model`` the trained policy (eval mode), ``step`` updates done in total (resumed ones included),
    ``checkpoint_path`` (or None); ``history`` covers every step of the run, resumed sessions included."""

    model: GPT
    step: int
    checkpoint_path: str | None


def train_rlvr(
    trainer: RLVRTrainer,
    *,
    callback: Callback | None = None,
    callback_every: int = 1,
    progress: bool = False,
) -> RLVRResult:
    """Step ``trainer`` until ``trainer.config.steps`` updates in total (a resumed trainer continues from its step)
    with ``config.num_threads`` torch threads. ``callback(state)`` returning True stops the run; the checkpoint (when
    the trainer has a path) is saved on every way out of the loop but an exception."""
    if not isinstance(trainer, RLVRTrainer):
        raise TypeError(f"trainer: expected an RLVRTrainer, got {type(trainer).__name__}")
    return RLVRResult(**run_to_budget(trainer, callback=callback, callback_every=callback_every, progress=progress))


def run_to_budget(stepper, *, callback: Callback | None, callback_every: int, progress: bool) -> dict:
    """The loop of :func:`train_rlvr` for any stepped LM trainer with ``step_count``, ``config.steps``,
    ``config.num_threads``, ``checkpoint_path``, ``save(finished=)``, ``history`` and ``model``: step to
    ``config.steps`` in total, save on every way out but an exception, and return the result's common fields."""
    start_step = stepper.step_count
    remaining = stepper.config.steps - start_step
    stopped = False

    def watch(state: IterationState) -> bool:
        nonlocal stopped
        stopped = bool(callback(state))
        return stopped

    with torch_threads(stepper.config.num_threads):
        if remaining > 0:
            iterate(
                stepper,
                max_iter=remaining,
                callback=None if callback is None else watch,
                callback_every=callback_every,
                progress=progress,
            )
    if stepper.checkpoint_path is not None:
        stepper.save(finished=stepper.step_count >= stepper.config.steps)
    message = f"stopped by callback at step {stepper.step_count}" if stopped else f"{stepper.step_count} steps done"
    if start_step:
        message += f"; resumed from step {start_step}"
    return {
        "converged": False,
        "n_iter": stepper.step_count - start_step,
        "message": message,
        "history": {name: np.asarray(values, dtype=float) for name, values in stepper.history.items()},
        "model": stepper.model,
        "step": stepper.step_count,
        "checkpoint_path": None if stepper.checkpoint_path is None else str(stepper.checkpoint_path),
    }


# ---------------------------------------------------------------------------------------------------------------
# Held-out evaluation


def token_entropies(model: GPT, prompts: torch.Tensor, completions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """H(pi(. | q, o_<t)) = -sum_a pi(a) log pi(a) at every completion position (B, T), 0 off the mask (no grad)."""
    with torch.no_grad():
        _, _, states = score_with_states(model, prompts, completions, mask)
        log_probs = log_policy(model.lm_head(states))
        return torch.special.entr(log_probs.exp()).sum(-1) * mask


def evaluate_model(
    model: GPT,
    task: Task,
    prompts: Sequence[str],
    n_samples: int,
    *,
    ks=None,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    base_model: GPT | None = None,
    max_new_tokens: int | None = None,
    rows_per_batch: int = 4096,
    n_boot: int = 1000,
) -> EvaluationReport:
    """``n_samples`` completions per prompt from ``model`` (KV-cache sampler, torch seed ``seed``), verified and
    summarised by :func:`lab.rlvr.eval.evaluate`: pass@k at ``ks`` (default 1, 2, 4, ..., n) with bootstrap
    intervals over prompts, support, answer entropy, exact token entropy, ``task.strategy`` usage and, with
    ``base_model``, KL(pi || pi_base) from the sequences' log-probs under both models (untempered: an unbiased
    estimate at ``temperature`` 1). Prompts are sampled ``rows_per_batch // n_samples`` at a time."""
    prompts = list(prompts)
    n_samples = positive_int(n_samples, "n_samples")
    if not prompts:
        raise ValueError("prompts: expected at least one prompt")
    max_new_tokens = max_new_tokens or task.max_completion_length
    generator = torch.Generator(device=model.device).manual_seed(seed)
    chunk_size = max(1, positive_int(rows_per_batch, "rows_per_batch") // n_samples)
    answers, rewards, strategies, entropies, masks, logp_policy, logp_base = [], [], [], [], [], [], []
    model.eval()
    for first in range(0, len(prompts), chunk_size):
        chunk = prompts[first : first + chunk_size]
        ids = _encode_prompts(chunk, model.device)
        samples = sample(
            model, ids, n_samples, max_new_tokens, temperature=temperature, top_k=top_k, generator=generator
        )
        texts, chunk_rewards = _verify(task, chunk, samples.tokens, n_samples)
        answers += [texts[i : i + n_samples] for i in range(0, len(texts), n_samples)]
        rewards.append(np.reshape(chunk_rewards, (len(chunk), n_samples)))
        strategies += [
            [task.strategy(text) for text in texts[i : i + n_samples]] for i in range(0, len(texts), n_samples)
        ]
        padding = max_new_tokens - samples.tokens.shape[1]
        entropy = token_entropies(model, ids, samples.tokens, samples.mask)
        entropies.append(nn.functional.pad(entropy, (0, padding)).reshape(len(chunk), n_samples, -1).cpu().numpy())
        masks.append(nn.functional.pad(samples.mask, (0, padding)).reshape(len(chunk), n_samples, -1).cpu().numpy())
        logp_policy.append(samples.logp.sum(1).reshape(len(chunk), n_samples).cpu().numpy())
        if base_model is not None:
            with torch.no_grad():
                base_logp, _ = score(base_model.eval(), ids, samples.tokens, samples.mask)
            logp_base.append(base_logp.sum(1).reshape(len(chunk), n_samples).cpu().numpy())
    kl_inputs = {}
    if base_model is not None:
        kl_inputs = {"logp_policy_seq": np.concatenate(logp_policy), "logp_base_seq": np.concatenate(logp_base)}
    return evaluate(
        answers,
        np.concatenate(rewards),
        strategies,
        token_entropies=np.concatenate(entropies),
        token_mask=np.concatenate(masks),
        ks=ks,
        n_boot=n_boot,
        seed=seed,
        **kl_inputs,
    )


def minority_prompts(task: Task, prompts: Sequence[str]) -> np.ndarray | None:
    """Per prompt, whether it is of the minority type (``task.minority``, Countdown-lite); None for other tasks."""
    if not hasattr(task, "minority"):
        return None
    return np.array([task.minority(prompt) for prompt in prompts], dtype=bool)


def evaluation_metrics(report: EvaluationReport, minority: np.ndarray | None = None) -> dict[str, float]:
    """A report as scalars: its ``summary`` (``pass@{k}``, ``support``, ``answer_entropy``, ``entropy``,
    ``kl_to_ref``, ``strategy/{label}``), the bootstrap interval of each pass@k as ``pass@{k}.low`` / ``.high``,
    ``kl_to_ref.stderr``, and with a ``minority`` mask holding both prompt types ``minority/pass@{k}`` and
    ``majority/pass@{k}`` with ``minority_fraction``."""
    metrics = dict(report.summary)
    for k, low, high in zip(report.curve.ks, report.curve_low, report.curve_high, strict=True):
        metrics[f"pass@{k}.low"], metrics[f"pass@{k}.high"] = float(low), float(high)
    if report.kl is not None:
        metrics["kl_to_ref.stderr"] = report.kl.standard_error
    if minority is not None and minority.any() and not minority.all():
        for part, curve in minority_breakdown(report, minority).items():
            metrics |= {f"{part}/pass@{k}": float(value) for k, value in zip(curve.ks, curve.mean, strict=True)}
        metrics["minority_fraction"] = float(minority.mean())
    return metrics
