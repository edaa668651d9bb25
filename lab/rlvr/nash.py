"""Nash learning on the tiny LM: approximate Nash mirror prox (and Nash-MD) against a verifiable preference oracle.

Papers: Tiapkin et al., "Accelerating Nash Learning from Human Feedback via Mirror Prox" (arXiv 2505.19731 v1,
Nash-MP and its approximate, policy-gradient version for LLMs); Munos et al., "Nash Learning from Human Feedback"
(arXiv 2312.00886, Nash-MD). The tabular methods are :mod:`theory.games.nash`; the oracle is
:mod:`lab.rlvr.preference` (P(y > y') over Countdown-lite completions of one prompt).

Notation: pi_theta the LM, mu the frozen base model (the reference), beta > 0 the regularisation, eta the prox step
in the scale of :mod:`theory.games.nash` (its eta'; the paper's eta / beta; Nash-MP's certified tabular limit is 2).

1. Prox step (:meth:`NashLearner._prox`) from the anchor pi_k against an opponent nu with anchor weight lam:

       maximise  E_x E_{y ~ pi, y' ~ nu} P(y > y') - beta KL(pi || mu) - lam KL(pi || pi_k),

   approximated by ``inner_steps`` policy-gradient updates of theta. One update: P train prompts x (numpy seed
   (seed, k, phase, inner, 0)); G completions y_i ~ pi_theta and G' opponents y'_j ~ nu per prompt (one torch
   generator seeded from (seed, k, phase, inner, 1)); the preference reward r_i = (1/G') sum_j P(y_i > y'_j)
   (G' oracle queries per completion); the per-token log-ratios to mu and to pi_k summed over the completion and
   folded into the reward, R_i = r_i - beta sum_t (log pi_theta - log mu)(o_t) - lam sum_t (log pi_theta - log pi_k)
   (o_t) (detached); leave-one-out group baseline A_i = R_i - mean_{j != i} R_j; loss = -(1/B) sum_i A_i
   sum_t log pi_theta(o_t): :func:`lab.rlvr.objectives.rloo` with ``beta`` (one update per batch, so its ratio is 1
   and its clipping never acts), the anchor term passed in through the rewards. Since E_{y~pi}[grad log pi(y)] = 0,
   this is an unbiased gradient of the prox objective, KL terms included. log pi_theta(o_t) is the sampler's own and
   the gradient goes down its recorded activations (:mod:`lab.rlvr.tape`; ``backward_through_sampler=False``
   scores the samples again). Gradient norm clipped at ``grad_clip``; AdamW at ``lr``.
2. Nash-MP iteration k (``method="nash_mp"``): freeze pi_k (a copy: the anchor and the half step's opponent);
   half step  pi_{k+1/2} = prox(pi_k; nu = pi_k, lam = 1/eta), frozen as the next opponent;
   full step  pi_{k+1}   = prox(pi_k; nu = pi_{k+1/2}, lam = 1/eta), started again from pi_k's weights and
   optimizer state (both prox steps start at the anchor, as in the tabular method). 2 prox steps per iteration.
3. Nash-MD iteration k (``method="nash_md"``): one prox step with nu = the geometric mixture pi_k^(1 - eta beta)
   mu^(eta beta) and lam = 1/eta - beta: the tabular Nash-MD step argmax <pi, P pi^mu> - (1/eta) KL(pi || pi^mu)
   rewritten with (1/eta) KL(pi || pi^mu) = beta KL(pi || mu) + (1/eta - beta) KL(pi || pi_k) + const (needs
   eta beta <= 1). The mixture is taken at the token level, as TRL's ``GeometricMixtureWrapper`` does: each token
   is drawn from softmax((1 - eta beta) z_k + eta beta z_mu) of the two models' logits at that prefix
   (:func:`sample_geometric_mixture`). This is not the sequence-level mixture (its normaliser does not factor over
   tokens); the two agree when a completion is a single token.
4. Metrics of :meth:`NashLearner.step`: cumulative ``queries`` (oracle calls P(y > y'), G G' per prompt and
   update); from the last prox step, means over its updates: ``preference`` = mean r_i (win rate against its
   opponent), ``kl_to_ref`` and ``kl_to_anchor`` = mean over completions of sum_t k3(logp, ref or anchor logp)
   (unbiased for the sequence KL, as :class:`lab.rlvr.trainer.RLVRTrainer` logs it), ``loss``, ``grad_norm``
   (before clipping); ``step_seconds``.
5. Checkpoints (:meth:`NashLearner.save`, atomic) hold the policy, the optimizer, the step, the query count, the
   history and the config. Every draw of iteration k comes from generators seeded by (seed, k, phase, inner), so a
   run killed and resumed from its checkpoint ends with the metrics and weights of an uninterrupted run (same
   device and threads), as :mod:`lab.rlvr.trainer`.
6. Held-out evaluation (:class:`HeldOutGames`): a fixed set of held-out prompts, each with its answer set and
   preference matrix P_x. Once, from the base model: n samples per prompt with torch seed ``seed`` give the
   smoothed mu_hat_x = (counts + alpha) / (n + alpha A) (strictly positive) and the exact equilibrium pi*_x of
   PreferenceGame(P_x, mu_hat_x, beta) (:func:`theory.games.solve_equilibrium`); n more with seed ``seed + 1``
   give the base's frequencies q_x. A policy is sampled with seed ``seed + 1`` too (common random numbers: the base
   itself scores exactly 1/2 and KL 0, while its pi_hat carries the sampling noise of every later policy's),
   giving frequencies p_x and the smoothed pi_hat_x; metrics

       win_rate_vs_ref   = mean_x p_x^T P_x q_x   (the oracle averaged over all n x n pairs of policy and base
                           samples: exact for the two empirical answer distributions),
       kl_to_equilibrium = mean_x KL(pi*_x || pi_hat_x)   (the KL-to-equilibrium proxy),
       kl_to_ref         = mean over samples of log pi(y) - log mu(y) (:func:`lab.rlvr.eval.kl_to_base`), with its
                           standard error ``kl_to_ref.stderr``,
       pass@1            = the verifier's mean reward on the same samples.

   What is approximate: pi_hat and mu_hat are sampling estimates (smoothing biases both towards uniform), every
   string that is not a well-formed answer is lumped into one class, and pi* is the equilibrium of the estimated
   game, not of the LM's game over strings.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lab.rlvr.checkpoints import check_same_run, cpu_state, write_atomically
from lab.rlvr.eval import kl_to_base
from lab.rlvr.model import GPT, Samples, log_policy, prefill, prompt_prefix, sample, score
from lab.rlvr.objectives import PolicyBatch, k3_kl, rloo
from lab.rlvr.preference import KINDS, answer_counts, answer_index, preference_game, preference_matrix
from lab.rlvr.tape import DecodeTape, backward_from_leaves, policy_leaves
from lab.rlvr.tasks import VOCAB, CountdownLite
from lab.rlvr.trainer import RESUME_INVARIANT_FIELDS, check_policy_and_base, completion_budget, run_to_budget
from lab.torch_utils import positive_int
from theory.games import kl, solve_equilibrium
from theory.solver import Callback, SolverResult

CHECKPOINT_FORMAT = "lab.rlvr.nash/1"
METHODS = ("nash_mp", "nash_md")
TIMING_METRICS = ("step_seconds",)
"""The only logged value of a step that differs between two runs with the same seed."""


def _positive_real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class NashConfig:
    """Everything that defines a Nash learning run on the LM besides the models (module docstring)."""

    method: str = "nash_mp"
    """``"nash_mp"`` (approximate Nash mirror prox) or ``"nash_md"`` (Nash-MD with a token-level mixture)."""
    kind: str = "closer"
    """The oracle of :mod:`lab.rlvr.preference`: ``"closer"`` (to the target) or ``"intransitive"`` (majority)."""
    beta: float = 0.1
    eta: float = 2.0
    """Prox step, theory.games' eta': anchor weight 1/eta (Nash-MP, eta <= 2), 1/eta - beta (Nash-MD, eta beta <= 1)."""
    prompts_per_step: int = 8
    group_size: int = 8
    """G completions per prompt from pi_theta (>= 2: the leave-one-out baseline)."""
    opponents: int = 8
    """G' opponent completions per prompt from nu."""
    inner_steps: int = 2
    """Policy-gradient updates per prox step."""
    lr: float = 1e-4
    grad_clip: float = 1.0
    max_new_tokens: int | None = None
    """None: the task's ``max_completion_length``."""
    steps: int = 100
    """Nash iterations (Nash-MP: two prox steps of ``inner_steps`` updates each; Nash-MD: one)."""
    checkpoint_every: int = 10
    seed: int = 0
    num_threads: int | None = None
    """torch threads inside :func:`train_nash` (None: unchanged)."""
    backward_through_sampler: bool = True
    """Differentiate through the sampler's own activations (:mod:`lab.rlvr.tape`); False: score the samples again
    with grad (the same gradient to float rounding, one forward more)."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {self.method!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {self.kind!r}")
        for name in ("beta", "eta", "lr", "grad_clip"):
            _positive_real(getattr(self, name), name)
        if self.method == "nash_mp" and self.eta > 2:
            raise ValueError(f"eta: Nash-MP's step is certified up to 2 (theory.games), got {self.eta}")
        if self.method == "nash_md" and self.eta * self.beta > 1:
            raise ValueError(
                f"eta: Nash-MD mixes pi_k^(1 - eta beta) mu^(eta beta), needs eta beta <= 1, got {self.eta}"
            )
        for name in ("prompts_per_step", "group_size", "opponents", "inner_steps", "steps", "checkpoint_every"):
            positive_int(getattr(self, name), name)
        if self.group_size < 2:
            raise ValueError(
                f"group_size: expected at least 2 completions per prompt (leave-one-out), got {self.group_size}"
            )
        for name in ("max_new_tokens", "num_threads"):
            if getattr(self, name) is not None:
                positive_int(getattr(self, name), name)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {self.seed!r}")
        if not isinstance(self.backward_through_sampler, bool):
            raise TypeError(f"backward_through_sampler: expected a bool, got {self.backward_through_sampler!r}")

    @property
    def anchor_weight(self) -> float:
        """lam of the prox objective (module docstring, items 2 and 3)."""
        return 1 / self.eta if self.method == "nash_mp" else 1 / self.eta - self.beta


def _draw_seeds(seed: int, iteration: int, phase: int, update: int) -> tuple[np.random.Generator, int]:
    """The prompt generator and the torch sampling seed of one update: functions of these four numbers only."""
    key = [seed, iteration, phase, update]
    torch_seed = int(np.random.SeedSequence([*key, 1]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return np.random.default_rng([*key, 0]), torch_seed


def _frozen_copy(model: GPT) -> GPT:
    copied = copy.deepcopy(model).eval()
    copied.requires_grad_(False)
    return copied


def _encode(prompts: Sequence[str], device) -> torch.Tensor:
    return torch.as_tensor(VOCAB.encode_batch(list(prompts)), device=device)


@torch.no_grad()
def sample_geometric_mixture(
    model: GPT, reference: GPT, weight: float, prompts, group_size: int, max_new_tokens: int, *, generator
) -> Samples:
    """``group_size`` completions per prompt from the token-level geometric mixture pi^(1 - w) mu^(w): each token
    from softmax((1 - w) z_pi + w z_mu) of the two models' logits at the prefix (module docstring, item 3).
    ``logp`` holds the mixture's log-probabilities. Both models decode with a KV cache (one prefill per prompt);
    finished rows stay in the batch, fed EOS, and their later draws are discarded (completions are a few tokens)."""
    if not 0 <= weight <= 1:
        raise ValueError(f"weight: expected a mixing weight in [0, 1], got {weight!r}")
    models = (model, reference)
    capacity = prompts.shape[1] + max_new_tokens - 1
    caches, logits = zip(*(prefill(m, prompts, group_size, capacity=capacity) for m in models), strict=True)
    n_rows, device = caches[0].n_rows, model.device
    tokens = torch.full((n_rows, max_new_tokens), VOCAB.pad_id, dtype=torch.int64, device=device)
    logp = torch.zeros((n_rows, max_new_tokens), device=device)
    finished = torch.zeros(n_rows, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        log_probs = log_policy((1 - weight) * logits[0].float() + weight * logits[1].float())
        chosen = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(1)
        live = ~finished
        tokens[live, t] = chosen[live]
        logp[live, t] = log_probs.gather(1, chosen[:, None]).squeeze(1)[live]
        finished |= chosen == VOCAB.eos_id
        if t == max_new_tokens - 1 or finished.all():
            break
        fed = chosen.masked_fill(finished, VOCAB.eos_id)[:, None]
        logits = tuple(m(fed, cache)[:, -1] for m, cache in zip(models, caches, strict=True))
    lengths = (tokens != VOCAB.pad_id).sum(dim=1)
    width = int(lengths.max())
    mask = (torch.arange(width, device=device) < lengths[:, None]).float()
    return Samples(tokens=tokens[:, :width].contiguous(), mask=mask, logp=logp[:, :width].contiguous(), lengths=lengths)


def mean_preferences(
    prompts: Sequence[str], completions: Sequence[str], opponents: Sequence[str], kind: str
) -> np.ndarray:
    """r_i = (1/G') sum_j P(y_i > y'_j) against the G' opponents of y_i's prompt; completions come G per prompt
    and opponents G' per prompt, in prompt order. Shape (P G,)."""
    group, rivals = len(completions) // len(prompts), len(opponents) // len(prompts)
    rewards = np.empty(len(completions))
    for p, prompt in enumerate(prompts):
        mine = [answer_index(prompt, text) for text in completions[p * group : (p + 1) * group]]
        theirs = [answer_index(prompt, text) for text in opponents[p * rivals : (p + 1) * rivals]]
        rewards[p * group : (p + 1) * group] = preference_matrix(prompt, kind)[np.ix_(mine, theirs)].mean(axis=1)
    return rewards


class NashLearner:
    """Stepped Nash learning on the LM (module docstring). ``model`` is trained in place from the base; ``base_model``
    (mu) is frozen. ``step()`` runs one Nash iteration. With ``checkpoint_path`` it saves every ``checkpoint_every``
    iterations and resumes from an existing checkpoint there. Accessors: ``model``, ``step_count``, ``queries``,
    ``history`` (every iteration of the run, resumed sessions included), ``config``."""

    def __init__(
        self,
        model: GPT,
        base_model: GPT,
        task: CountdownLite,
        config: NashConfig | None = None,
        *,
        checkpoint_path: str | os.PathLike | None = None,
    ) -> None:
        config = NashConfig() if config is None else config
        if not isinstance(config, NashConfig):
            raise TypeError(f"config: expected a NashConfig, got {type(config).__name__}")
        check_policy_and_base(model, base_model)
        if not isinstance(task, CountdownLite):
            raise TypeError(f"task: the preference oracle is over Countdown-lite answers, got {type(task).__name__}")
        self.max_new_tokens = completion_budget(task, model, config.max_new_tokens)
        self.model, self.base_model, self.task, self.config = model.eval(), _frozen_copy(base_model), task, config
        self._optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=0.0)
        self.step_count = 0
        self.queries = 0
        self.history: dict[str, list[float]] = {}
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            self._resume(torch.load(self.checkpoint_path, map_location="cpu", weights_only=True))

    @property
    def converged(self) -> bool:
        return False  # a budgeted run: no stopping test

    def step(self) -> dict[str, float]:
        """One Nash iteration (module docstring, items 2-4)."""
        start = time.perf_counter()
        config = self.config
        anchor = _frozen_copy(self.model)
        if config.method == "nash_mp":
            at_anchor = copy.deepcopy(self._optimizer.state_dict())
            self._prox(anchor, self._policy_sampler(anchor), phase=0)
            leading = _frozen_copy(self.model)
            self.model.load_state_dict(anchor.state_dict())
            self._optimizer.load_state_dict(at_anchor)
            stats = self._prox(anchor, self._policy_sampler(leading), phase=1)
        else:
            stats = self._prox(anchor, self._mixture_sampler(anchor, config.eta * config.beta), phase=0)
        self.step_count += 1
        metrics = {"queries": float(self.queries), **stats, "step_seconds": time.perf_counter() - start}
        for name, value in metrics.items():
            self.history.setdefault(name, []).append(value)
        if self.checkpoint_path is not None and self.step_count % config.checkpoint_every == 0:
            self.save()
        return metrics

    def _policy_sampler(self, opponent: GPT) -> Callable:
        return lambda ids, generator: sample(
            opponent, ids, self.config.opponents, self.max_new_tokens, generator=generator
        )

    def _mixture_sampler(self, anchor: GPT, weight: float) -> Callable:
        return lambda ids, generator: sample_geometric_mixture(
            anchor, self.base_model, weight, ids, self.config.opponents, self.max_new_tokens, generator=generator
        )

    def _prox(self, anchor: GPT, opponent_sampler: Callable, *, phase: int) -> dict[str, float]:
        """``inner_steps`` policy-gradient updates of the prox objective (module docstring, item 1); the means of
        their statistics."""
        config, G = self.config, self.config.group_size
        totals: dict[str, float] = {}
        for update in range(config.inner_steps):
            prompt_rng, torch_seed = _draw_seeds(config.seed, self.step_count, phase, update)
            prompts = self.task.sample_prompts(config.prompts_per_step, prompt_rng, "train")
            ids = _encode(prompts, self.model.device)
            generator = torch.Generator(device=self.model.device).manual_seed(torch_seed)
            prefix = prompt_prefix(self.model, ids)  # with grad: serves the sampler and the loss
            tape = DecodeTape() if config.backward_through_sampler else None
            samples = sample(self.model, ids, G, self.max_new_tokens, generator=generator, prefix=prefix, tape=tape)
            rivals = opponent_sampler(ids, generator)
            preferences = mean_preferences(
                prompts, VOCAB.decode_batch(samples.tokens.cpu()), VOCAB.decode_batch(rivals.tokens.cpu()), config.kind
            )
            self.queries += len(preferences) * config.opponents
            tokens, mask = samples.tokens, samples.mask
            if tape is not None:  # the sampler's own log-probs: no scoring forward
                logp, _ = policy_leaves(tape, samples.logp)
            else:
                logp, _ = score(self.model, ids, tokens, mask, prefix=prefix)
            with torch.no_grad():
                ref_logp, _ = score(self.base_model, ids, tokens, mask)
                anchor_logp, _ = score(anchor, ids, tokens, mask)
            anchor_penalty = ((samples.logp - anchor_logp) * mask).sum(dim=1)
            rewards = torch.as_tensor(preferences, dtype=logp.dtype, device=logp.device)
            batch = PolicyBatch(
                logp=logp,
                old_logp=samples.logp,
                mask=mask,
                rewards=rewards - config.anchor_weight * anchor_penalty,
                group_size=G,
                ref_logp=ref_logp,
            )
            output = rloo(batch, beta=config.beta)
            self._optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            if tape is not None:
                backward_from_leaves(tape, logp)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
            self._optimizer.step()
            detached = logp.detach()
            stats = {
                "preference": float(preferences.mean()),
                "kl_to_ref": float((k3_kl(detached, ref_logp) * mask).sum(dim=1).mean()),
                "kl_to_anchor": float((k3_kl(detached, anchor_logp) * mask).sum(dim=1).mean()),
                "loss": float(output.loss.detach()),
                "grad_norm": float(grad_norm),
            }
            for name, value in stats.items():
                totals[name] = totals.get(name, 0.0) + value / config.inner_steps
        return totals

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def _record(self) -> dict:
        return {key: value for key, value in asdict(self.config).items() if key not in RESUME_INVARIANT_FIELDS}

    def save(self, path: str | os.PathLike | None = None, *, finished: bool = False) -> Path:
        """Write the checkpoint atomically (tmp file beside it, then ``os.replace``) to ``path`` (default: the
        learner's ``checkpoint_path``); returns the path."""
        path = self.checkpoint_path if path is None else Path(path)
        if path is None:
            raise ValueError("path: this learner has no checkpoint_path; pass one")
        payload = {
            "format": CHECKPOINT_FORMAT,
            "task": self.task.name,
            "vocab": list(VOCAB.tokens),
            "model_config": asdict(self.model.config),
            "config": self._record(),
            "step": self.step_count,
            "queries": self.queries,
            "finished": finished,
            "history": self.history,
            "model": cpu_state(self.model),
            "optimizer": self._optimizer.state_dict(),
        }
        return write_atomically(payload, path)

    def _resume(self, checkpoint: dict) -> None:
        expected = {
            "task": self.task.name,
            "vocab": list(VOCAB.tokens),
            "model_config": asdict(self.model.config),
            "config": self._record(),
        }
        check_same_run(checkpoint, self.checkpoint_path, checkpoint_format=CHECKPOINT_FORMAT, expected=expected)
        self.model.load_state_dict(checkpoint["model"])
        self._optimizer.load_state_dict(checkpoint["optimizer"])
        self.step_count, self.queries = checkpoint["step"], checkpoint["queries"]
        self.history = {name: list(values) for name, values in checkpoint["history"].items()}


@dataclass(frozen=True, kw_only=True)
class NashLearningResult(SolverResult):
    """``model`` the trained policy (eval mode), ``step`` iterations done in total (resumed ones included),
    ``queries`` oracle calls in total, ``checkpoint_path`` (or None); ``history`` covers every iteration of the run,
    resumed sessions included."""

    model: GPT
    step: int
    queries: int
    checkpoint_path: str | None


def train_nash(
    learner: NashLearner, *, callback: Callback | None = None, callback_every: int = 1, progress: bool = False
) -> NashLearningResult:
    """Step ``learner`` until ``learner.config.steps`` iterations in total (a resumed learner continues from its
    step) with ``config.num_threads`` torch threads. ``callback(state)`` returning True stops the run; the checkpoint
    (when the learner has a path) is saved on every way out of the loop but an exception."""
    if not isinstance(learner, NashLearner):
        raise TypeError(f"learner: expected a NashLearner, got {type(learner).__name__}")
    fields = run_to_budget(learner, callback=callback, callback_every=callback_every, progress=progress)
    return NashLearningResult(**fields, queries=learner.queries)


# ---------------------------------------------------------------------------------------------------------------
# Held-out evaluation (module docstring, item 6)


@dataclass(frozen=True)
class AnswerSample:
    """n completions per prompt of one model: ``counts`` per prompt over its answer set, the verifier's mean
    ``reward``, and the summed log-probs (P, n) of each completion under the model and under the base."""

    counts: list[np.ndarray]
    reward: float
    logp_model: np.ndarray
    logp_base: np.ndarray


def sample_answers(
    model: GPT,
    base_model: GPT,
    task: CountdownLite,
    prompts: Sequence[str],
    n_samples: int,
    *,
    seed: int,
    max_new_tokens: int | None = None,
    rows_per_batch: int = 4096,
) -> AnswerSample:
    """``n_samples`` completions per prompt from ``model`` (torch seed ``seed``, temperature 1), classified over the
    prompts' answer sets, verified, and scored under ``base_model``; ``rows_per_batch // n_samples`` prompts a batch."""
    n_samples = positive_int(n_samples, "n_samples")
    max_new_tokens = max_new_tokens or task.max_completion_length
    generator = torch.Generator(device=model.device).manual_seed(seed)
    chunk_size = max(1, positive_int(rows_per_batch, "rows_per_batch") // n_samples)
    counts, rewards, logp_model, logp_base = [], [], [], []
    for first in range(0, len(prompts), chunk_size):
        chunk = list(prompts[first : first + chunk_size])
        ids = _encode(chunk, model.device)
        samples = sample(model, ids, n_samples, max_new_tokens, generator=generator)
        texts = VOCAB.decode_batch(samples.tokens.cpu())
        for p, prompt in enumerate(chunk):
            answers = texts[p * n_samples : (p + 1) * n_samples]
            counts.append(answer_counts(prompt, answers))
            rewards += [task.verify(prompt, text) for text in answers]
        with torch.no_grad():
            base_logp, _ = score(base_model, ids, samples.tokens, samples.mask)
        logp_model.append(samples.logp.sum(1).reshape(len(chunk), n_samples).cpu().numpy())
        logp_base.append(base_logp.sum(1).reshape(len(chunk), n_samples).cpu().numpy())
    return AnswerSample(
        counts=counts,
        reward=float(np.mean(rewards)),
        logp_model=np.concatenate(logp_model),
        logp_base=np.concatenate(logp_base),
    )


def smoothed(counts: np.ndarray, smoothing: float) -> np.ndarray:
    """(counts + alpha) / (n + alpha A): strictly positive for alpha > 0."""
    return (counts + smoothing) / (counts.sum() + smoothing * counts.size)


class HeldOutGames:
    """The held-out games of module docstring item 6, built once from the base model: per prompt the preference
    matrix, the base's answer ``frequencies`` q_x, ``references`` mu_hat_x (smoothed) and ``equilibria`` pi*_x
    (log-probabilities) of PreferenceGame(P_x, mu_hat_x, beta). :meth:`evaluate` scores a policy against them."""

    def __init__(
        self,
        base_model: GPT,
        task: CountdownLite,
        prompts: Sequence[str],
        *,
        kind: str,
        beta: float,
        n_samples: int,
        smoothing: float,
        seed: int,
        max_new_tokens: int | None = None,
    ) -> None:
        if not prompts:
            raise ValueError("prompts: expected at least one held-out prompt")
        self.base_model, self.task, self.prompts = base_model, task, list(prompts)
        self.kind, self.beta, self.n_samples = kind, _positive_real(beta, "beta"), n_samples
        self.smoothing, self.seed, self.max_new_tokens = _positive_real(smoothing, "smoothing"), seed, max_new_tokens
        self.references = [smoothed(counts, self.smoothing) for counts in self._sample(base_model, seed).counts]
        self.frequencies = [counts / counts.sum() for counts in self._sample(base_model, seed + 1).counts]
        self.equilibria = [solve_equilibrium(game).log_policy for game in self.games()]

    def games(self) -> list:
        """PreferenceGame(P_x, mu_hat_x, beta) per held-out prompt."""
        return [
            preference_game(prompt, reference, self.beta, self.kind)
            for prompt, reference in zip(self.prompts, self.references, strict=True)
        ]

    def _sample(self, model: GPT, seed: int) -> AnswerSample:
        return sample_answers(
            model,
            self.base_model,
            self.task,
            self.prompts,
            self.n_samples,
            seed=seed,
            max_new_tokens=self.max_new_tokens,
        )

    def evaluate(self, model: GPT) -> dict[str, float]:
        """``win_rate_vs_ref``, ``kl_to_equilibrium``, ``kl_to_ref`` (+ ``.stderr``) and ``pass@1`` of ``model``."""
        drawn = self._sample(model, self.seed + 1)
        win_rates, distances = [], []
        for prompt, counts, base, log_star in zip(
            self.prompts, drawn.counts, self.frequencies, self.equilibria, strict=True
        ):
            win_rates.append(counts / counts.sum() @ preference_matrix(prompt, self.kind) @ base)
            distances.append(kl(log_star, np.log(smoothed(counts, self.smoothing))))
        divergence = kl_to_base(drawn.logp_model, drawn.logp_base)
        return {
            "win_rate_vs_ref": float(np.mean(win_rates)),
            "kl_to_equilibrium": float(np.mean(distances)),
            "kl_to_ref": divergence.value,
            "kl_to_ref.stderr": divergence.standard_error,
            "pass@1": drawn.reward,
        }
