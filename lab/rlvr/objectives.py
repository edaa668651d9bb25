"""RLVR objectives: GRPO, Dr.GRPO, DAPO, RLOO, PPO, PACS, PSR / NSR / W-REINFORCE and ROVER as pure loss functions.

Each objective is ``fn(batch, **hyperparameters) -> ObjectiveOutput(loss, stats)`` of one rollout batch
(:class:`PolicyBatch`): B rows = groups of G consecutive completions o_i of one prompt, T right-padded completion
positions with mask m (1 on real tokens incl. EOS, |o_i| = sum_t m_{i,t}), verifier rewards r_i in {0, 1}, and
per-token log-probs under the trained policy (logp), the sampling policy (old_logp) and optionally the reference model
(ref_logp). Formulas and official defaults: /work/shared/notes/rlvr.md §1. Notation:

    rho_{i,t} = exp(logp - old_logp),   l(rho, A) = min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)   (PPO-clip),
    D_{i,t} = exp(ref - logp) - (ref - logp) - 1   (k3 KL estimate of KL(pi_theta || pi_ref), Schulman 2020).

1. GRPO (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300; TRL ``GRPOTrainer``, ``loss_type="grpo"``):
   A_i = (r_i - mean_g r) / (std_g r + 1e-4) with TRL's Bessel-corrected group std (verl: + 1e-6),
   L = -1/B sum_i 1/|o_i| sum_t [l(rho_{i,t}, A_i) - beta D_{i,t}]  (sequence mean, then batch mean).
2. Dr.GRPO (Liu et al. 2025, arXiv 2503.20783; TRL ``loss_type="dr_grpo"``): A_i = r_i - mean_g r (no std),
   L = -1/(B L_max) sum_{i,t} [l - beta D], L_max = the maximum completion length (a constant, not |o_i|).
3. DAPO (Yu et al. 2025, arXiv 2503.14476; TRL ``loss_type="dapo"``): the GRPO advantage, clip-higher
   eps_low = 0.2, eps_high = 0.28, token mean L = -1/(sum m) sum_{i,t} l, no KL. (Dynamic sampling and overlong
   shaping are sampler/reward choices, not part of this loss.)
4. RLOO (Ahmadian et al. 2024, arXiv 2402.14740; TRL ``RLOOTrainer``): r'_i = r_i - beta sum_t (old - ref),
   A_i = r'_i - mean_{j != i} r'_j, sequence ratio rho_i = exp(sum_t (logp - old)), L = -1/B sum_i l(rho_i, A_i).
5. PPO with a value head (Schulman et al. 2017; Ouyang et al. 2022; verl ``compute_gae_advantage_return``, TRL PPO):
   per-token reward r_t = r_i 1[t = |o_i|] - beta_kl (old - ref)_t; GAE on the rollout values V_old:
   delta_t = r_t + gamma V_old(t+1) - V_old(t) (V = 0 after the last token), A_t = sum_l (gamma lam)^l delta_{t+l},
   returns R_t = A_t + V_old(t); A whitened over the batch's tokens; L = token mean of -l(rho, A)
   + c_v 1/2 token mean of max((V - R)^2, (clip(V, V_old -+ eps_v) - R)^2).
6. PACS (Li et al. 2025, arXiv 2509.02522; ritzz-ai/PACS ``pacs_core_algos.py``): score
   rhat_i = beta sum_t m (logp - old), leave-one-out logit psi_i = rhat_i - mean_{j != i} rhat_j, label y_i = r_i,
   class-balanced BCE with logits L = -1/B sum_i w_i [y_i log sigma(psi_i) + (1 - y_i) log(1 - sigma(psi_i))],
   w_i = G / (2 G_{y_i}) in groups with both labels (sklearn "balanced"), w_i = 1 in all-correct / all-wrong groups.
   No KL, no clipping.
7. PSR / NSR / W-REINFORCE (Zhu et al. 2025, arXiv 2506.01347; TianHongZXY/RLVR-Decomposed): PPO-clip (eps 0.2),
   token mean, outcome advantages PSR A = +1 on correct rows, NSR A = -1 on incorrect rows, W-REINFORCE A = lambda on
   correct and -1 on incorrect rows (lambda = 0.1). PSR / NSR drop the other rows from the batch, so the token mean
   counts only the kept rows' tokens (as the official trainer's subsetting does).
8. ROVER (He et al. 2025, arXiv 2509.24981; yuxiaooye/ROVER): Q_t = rho (logp_t - old_t), uniform-policy value of
   the next state V_u(t+1) = rho (mean_logp_{t+1} - old_mean_logp_{t+1}) (mean over the whole vocabulary of
   log pi(.|q, o_<t+1); current one detached; 0 after the last token), target y_t = (r_i - mean_g r) + V_u(t+1)
   (detached), L = token mean of (Q_t - y_t)^2.

Shared numbers per objective (``stats``, floats): ``reward_mean``, ``frac_reward_zero_std`` (groups whose rewards are
all equal), ``completion_length``, ``approx_kl`` = token mean of (old - logp) (k1 estimate of KL(pi_old || pi_theta)),
``entropy_proxy`` = token mean of -logp (the sampled tokens' surprisal: an unbiased estimate of the per-token entropy
when sampling is on-policy), ``kl_to_ref`` (token mean of D, when ref_logp is given), and per objective the advantage
mean (token-weighted), clip fractions, value / classifier / regression terms.

Not included: the entropy bonus of verl's PPO loss (``entropy_coeff`` 0.001 in RLVR-Decomposed) needs the full
next-token distribution, which a :class:`PolicyBatch` does not carry.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

STD_EPS = 1e-4
"""Added to the group reward std in GRPO/DAPO advantages (TRL ``grpo_trainer``: ``std_rewards + 1e-4``)."""

WHITEN_EPS = 1e-8
"""Added to the variance when PPO whitens advantages (verl / TRL ``masked_whiten``)."""

_TOKEN_FIELDS = ("logp", "old_logp", "ref_logp", "values", "old_values", "mean_logp", "old_mean_logp")
_DETACHED_FIELDS = ("old_logp", "ref_logp", "old_values", "old_mean_logp")


@dataclass(frozen=True, kw_only=True)
class PolicyBatch:
    """One rollout batch: B = n_prompts x G rows (G consecutive rows share a prompt), T completion positions.

    ``logp`` (B, T): log pi_theta(o_t | q, o_<t) (carries the gradient); ``old_logp`` (B, T): the same under the
    sampling policy; ``mask`` (B, T): 1 on real completion tokens incl. EOS, right-padded, at least one per row;
    ``rewards`` (B,): verifier rewards; ``group_size``: G. Optional (B, T): ``ref_logp`` (reference model),
    ``values`` / ``old_values`` (value head now / at rollout), ``mean_logp`` / ``old_mean_logp`` (mean over the
    vocabulary of log pi(. | q, o_<t), now / at rollout). Entries at padded positions are ignored, whatever they hold.
    """

    logp: torch.Tensor
    old_logp: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor
    group_size: int
    ref_logp: torch.Tensor | None = None
    values: torch.Tensor | None = None
    old_values: torch.Tensor | None = None
    mean_logp: torch.Tensor | None = None
    old_mean_logp: torch.Tensor | None = None

    def __post_init__(self):
        logp = self.logp
        if not isinstance(logp, torch.Tensor) or not logp.is_floating_point() or logp.ndim != 2 or 0 in logp.shape:
            raise ValueError(f"logp: expected a non-empty floating (B, T) tensor, got {_describe(logp)}")
        n_rows = logp.shape[0]
        group_size = self.group_size
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size: expected a positive int, got {group_size!r}")
        if n_rows % group_size:
            raise ValueError(f"group_size: expected a divisor of the batch size B = {n_rows}, got {group_size}")
        mask = self.mask
        if not isinstance(mask, torch.Tensor) or mask.shape != logp.shape or mask.device != logp.device:
            raise ValueError(f"mask: expected a tensor of shape {tuple(logp.shape)} like logp, got {_describe(mask)}")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask: expected only 0 and 1")
        if not bool((mask[:, 0] == 1).all()) or bool((mask[:, 1:] > mask[:, :-1]).any()):
            raise ValueError("mask: expected right-padded rows (1...1 0...0) with at least one completion token each")
        rewards = self.rewards
        if not isinstance(rewards, torch.Tensor) or rewards.shape != (n_rows,) or not rewards.is_floating_point():
            raise ValueError(f"rewards: expected a floating tensor of shape ({n_rows},), got {_describe(rewards)}")
        if not bool(torch.isfinite(rewards).all()):
            raise ValueError("rewards: expected finite values")
        active = mask.bool()
        for name in _TOKEN_FIELDS:
            tensor = getattr(self, name)
            if tensor is None and name in ("logp", "old_logp"):
                raise ValueError(f"{name}: expected a (B, T) tensor, got None")
            if tensor is None:
                continue
            if (
                not isinstance(tensor, torch.Tensor)
                or tensor.shape != logp.shape
                or not tensor.is_floating_point()
                or tensor.device != logp.device
            ):
                raise ValueError(
                    f"{name}: expected a floating tensor of shape {tuple(logp.shape)} on {logp.device}, "
                    f"got {_describe(tensor)}"
                )
            if not bool(torch.isfinite(tensor.detach()[active]).all()):
                raise ValueError(f"{name}: expected finite values on completion tokens (mask == 1)")

    @property
    def batch_size(self) -> int:
        """B, the number of completions."""
        return self.logp.shape[0]

    @property
    def token_mask(self) -> torch.Tensor:
        """The mask as 0/1 in logp's dtype."""
        return self.mask.to(self.logp.dtype)

    @property
    def lengths(self) -> torch.Tensor:
        """|o_i| (B,), completion lengths in tokens."""
        return self.token_mask.sum(dim=1)

    def masked(self, name: str) -> torch.Tensor:
        """Field ``name`` with zeros at padded positions (NaN or inf there cannot leak); old/ref fields detached."""
        tensor = getattr(self, name)
        if name in _DETACHED_FIELDS:
            tensor = tensor.detach()
        return torch.where(self.mask.bool(), tensor, torch.zeros((), dtype=tensor.dtype, device=tensor.device))


@dataclass(frozen=True)
class ObjectiveOutput:
    """A scalar ``loss`` to minimise (carries the gradient of logp / values) and ``stats``, plain floats to log."""

    loss: torch.Tensor
    stats: dict[str, float]


Objective = Callable[..., ObjectiveOutput]


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)} on {value.device}"
    return repr(value) if value is None else type(value).__name__


# ---------------------------------------------------------------------------------------------------------------
# Hyperparameter and batch checks


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


def _nonnegative(value, name: str) -> float:
    value = _real(value, name)
    if value < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
    return value


def _positive(value, name: str) -> float:
    value = _real(value, name)
    if value <= 0:
        raise ValueError(f"{name}: expected a number > 0, got {value!r}")
    return value


def _clip_range(epsilon_low, epsilon_high) -> tuple[float, float]:
    low, high = _real(epsilon_low, "epsilon_low"), _real(epsilon_high, "epsilon_high")
    if not 0 < low < 1:
        raise ValueError(f"epsilon_low: expected a number in (0, 1), got {low!r}")
    if high <= 0:
        raise ValueError(f"epsilon_high: expected a number > 0, got {high!r}")
    return low, high


def _unit_interval(value, name: str) -> float:
    value = _real(value, name)
    if not 0 <= value <= 1:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
    return value


def _require(batch: PolicyBatch, names, objective: str, reason: str) -> None:
    for name in names:
        if getattr(batch, name) is None:
            raise ValueError(f"{name}: {objective} needs batch.{name} ({reason}), got None")


def _require_groups(batch: PolicyBatch, objective: str) -> None:
    if batch.group_size < 2:
        raise ValueError(f"group_size: {objective} needs at least 2 completions per prompt, got {batch.group_size}")


def _require_binary_rewards(batch: PolicyBatch, objective: str) -> None:
    if not bool(((batch.rewards == 0) | (batch.rewards == 1)).all()):
        raise ValueError(f"rewards: {objective} reads them as correct/incorrect labels, expected only 0 and 1")


# ---------------------------------------------------------------------------------------------------------------
# Shared math (pure functions of tensors)


def group_advantages(rewards: torch.Tensor, group_size: int, *, scale: bool = True) -> torch.Tensor:
    """A_i = r_i - mean_g r, divided by (std_g r + 1e-4) when ``scale`` (GRPO; Bessel std as TRL); shape (B,)."""
    grouped = rewards.reshape(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale:
        centred = centred / (grouped.std(dim=1, keepdim=True) + STD_EPS)
    return centred.reshape(-1)


def leave_one_out(values: torch.Tensor, group_size: int) -> torch.Tensor:
    """x_i - mean_{j != i} x_j within each group of ``group_size`` consecutive entries (RLOO baseline); shape (B,)."""
    grouped = values.reshape(-1, group_size)
    others = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others).reshape(-1)


def class_balance_weights(labels: torch.Tensor, group_size: int) -> torch.Tensor:
    """PACS ``weight_mode="question"``: w_i = G / (2 G_{y_i}) in groups holding both labels, else 1; shape (B,)."""
    grouped = labels.reshape(-1, group_size)
    n_correct = grouped.sum(dim=1, keepdim=True)
    n_wrong = group_size - n_correct
    mixed = (n_correct > 0) & (n_wrong > 0)
    balanced = torch.where(grouped == 1, group_size / (2 * n_correct), group_size / (2 * n_wrong))
    return torch.where(mixed, balanced, torch.ones_like(grouped)).reshape(-1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """D = exp(ref - logp) - (ref - logp) - 1 >= 0 per token (unbiased for KL(pi_theta || pi_ref) on-policy)."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


def clipped_surrogate(log_ratio: torch.Tensor, advantages: torch.Tensor, epsilon_low: float, epsilon_high: float):
    """PPO-clip loss -min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A), rho = exp(log_ratio), elementwise.

    Returns ``(loss, clipped_low, clipped_high)``: the bool masks where the clip is active and the gradient is cut,
    rho < 1 - eps_low with A < 0 and rho > 1 + eps_high with A > 0 (outside them the gradient is -A d rho).
    """
    ratio = torch.exp(log_ratio)
    loss = -torch.minimum(ratio * advantages, ratio.clamp(1 - epsilon_low, 1 + epsilon_high) * advantages)
    clipped_low = (ratio < 1 - epsilon_low) & (advantages < 0)
    clipped_high = (ratio > 1 + epsilon_high) & (advantages > 0)
    return loss, clipped_low, clipped_high


def generalized_advantages(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE (Schulman et al. 2016, arXiv 1506.02438) on right-padded rows; returns ``(A, R)``, zero on padding.

    delta_t = r_t + gamma V_{t+1} - V_t with V = 0 after the last token, A_t = delta_t + gamma lam A_{t+1},
    R_t = A_t + V_t.
    """
    rewards, values = rewards * mask, values * mask
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1)
    deltas = rewards + gamma * next_values - values
    advantages = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[:, 0])
    for t in range(deltas.shape[1] - 1, -1, -1):
        running = deltas[:, t] + gamma * lam * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def _token_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum()


def _masked_whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(x - mean) / sqrt(var + 1e-8) over the active tokens, Bessel-corrected var (verl / TRL ``masked_whiten``)."""
    count = mask.sum()
    mean = _token_mean(values, mask)
    variance = _token_mean((values - mean) ** 2, mask)
    if count > 1:
        variance = variance * count / (count - 1)
    return (values - mean) * torch.rsqrt(variance + WHITEN_EPS) * mask


def _terminal_rewards(batch: PolicyBatch) -> torch.Tensor:
    """r_t = r_i at the last completion token of row i, 0 elsewhere; shape (B, T)."""
    last = batch.lengths.long() - 1
    return F.one_hot(last, batch.logp.shape[1]).to(batch.logp.dtype) * batch.rewards[:, None]


# ---------------------------------------------------------------------------------------------------------------
# Stats


def _item(value: torch.Tensor) -> float:
    return float(value.detach())


def _batch_stats(batch: PolicyBatch) -> dict[str, float]:
    """Numbers every objective logs (module docstring); token means over the active tokens of the whole batch."""
    mask = batch.token_mask
    logp, old_logp = batch.masked("logp").detach(), batch.masked("old_logp")
    grouped = batch.rewards.reshape(-1, batch.group_size)
    stats = {
        "reward_mean": _item(batch.rewards.mean()),
        "frac_reward_zero_std": _item((grouped == grouped[:, :1]).all(dim=1).to(mask.dtype).mean()),
        "completion_length": _item(batch.lengths.mean()),
        "approx_kl": _item(_token_mean(old_logp - logp, mask)),
        "entropy_proxy": _item(_token_mean(-logp, mask)),
    }
    if batch.ref_logp is not None:
        stats["kl_to_ref"] = _item(_token_mean(k3_kl(logp, batch.masked("ref_logp")), mask))
    return stats


def _clip_stats(advantages, clipped_low, clipped_high, weights) -> dict[str, float]:
    """Advantage mean and clip fractions, weighted by ``weights`` (token mask, or ones per sequence)."""
    weights = weights.expand_as(advantages)
    return {
        "advantage_mean": _item(_token_mean(advantages, weights)),
        "clip_fraction": _item(_token_mean((clipped_low | clipped_high).to(weights.dtype), weights)),
        "clip_fraction_low": _item(_token_mean(clipped_low.to(weights.dtype), weights)),
        "clip_fraction_high": _item(_token_mean(clipped_high.to(weights.dtype), weights)),
    }


# ---------------------------------------------------------------------------------------------------------------
# Objectives


def _grpo_family(batch, *, objective, scale, epsilon_low, epsilon_high, beta, normaliser) -> ObjectiveOutput:
    """Shared body of GRPO / Dr.GRPO / DAPO: group advantage, token-level PPO-clip, optional k3 KL, one normaliser.

    ``normaliser``: ``"sequence"`` (1/B sum_i 1/|o_i| sum_t), ``"token"`` (1/sum m sum_{i,t}) or a number N
    (1/N sum_{i,t}).
    """
    _require_groups(batch, objective)
    epsilon_low, epsilon_high = _clip_range(epsilon_low, epsilon_high)
    beta = _nonnegative(beta, "beta")
    if beta > 0:
        _require(batch, ("ref_logp",), objective, f"beta = {beta} > 0 adds the k3 KL to the reference")
    mask, logp = batch.token_mask, batch.masked("logp")
    advantages = group_advantages(batch.rewards, batch.group_size, scale=scale)[:, None].expand_as(logp)
    per_token, clipped_low, clipped_high = clipped_surrogate(
        logp - batch.masked("old_logp"), advantages, epsilon_low, epsilon_high
    )
    if beta > 0:
        per_token = per_token + beta * k3_kl(logp, batch.masked("ref_logp"))
    per_token = per_token * mask
    if normaliser == "sequence":
        loss = (per_token.sum(dim=1) / batch.lengths).mean()
    elif normaliser == "token":
        loss = per_token.sum() / mask.sum()
    else:
        loss = per_token.sum() / normaliser
    stats = {"loss": _item(loss), **_batch_stats(batch), **_clip_stats(advantages, clipped_low, clipped_high, mask)}
    return ObjectiveOutput(loss, stats)


def grpo(
    batch: PolicyBatch, *, epsilon_low: float = 0.2, epsilon_high: float = 0.2, beta: float = 0.0
) -> ObjectiveOutput:
    """GRPO (DeepSeekMath; TRL ``loss_type="grpo"``): L = -1/B sum_i 1/|o_i| sum_t [l(rho_{i,t}, A_i) - beta D_{i,t}].

    A_i = (r_i - mean_g r) / (std_g r + 1e-4), Bessel std (TRL); D = k3 KL to ``ref_logp`` (needed when beta > 0;
    TRL's default beta is 0, DeepSeekMath used 0.04). On-policy (rho = 1) the gradient is
    -1/B sum_i A_i / |o_i| sum_t grad logp_{i,t}.
    """
    return _grpo_family(
        batch,
        objective="grpo",
        scale=True,
        epsilon_low=epsilon_low,
        epsilon_high=epsilon_high,
        beta=beta,
        normaliser="sequence",
    )


def dr_grpo(
    batch: PolicyBatch,
    *,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    beta: float = 0.0,
    max_length: int | None = None,
) -> ObjectiveOutput:
    """Dr.GRPO (Liu et al. 2025; TRL ``loss_type="dr_grpo"``): L = -1/(B L_max) sum_{i,t} [l(rho_{i,t}, A_i) - beta D].

    A_i = r_i - mean_g r (no std). L_max = ``max_length``, the configured maximum completion length (a constant
    across batches, as TRL's ``max_completion_length``); None uses the padded width T.
    """
    if max_length is None:
        max_length = batch.logp.shape[1]
    width = batch.logp.shape[1]
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < width:
        raise ValueError(f"max_length: expected an int >= the padded width T = {width}, got {max_length!r}")
    return _grpo_family(
        batch,
        objective="dr_grpo",
        scale=False,
        epsilon_low=epsilon_low,
        epsilon_high=epsilon_high,
        beta=beta,
        normaliser=batch.batch_size * max_length,
    )


def dapo(batch: PolicyBatch, *, epsilon_low: float = 0.2, epsilon_high: float = 0.28) -> ObjectiveOutput:
    """DAPO (Yu et al. 2025; TRL ``loss_type="dapo"``): L = -1/(sum_{i,t} m) sum_{i,t} l(rho_{i,t}, A_i), no KL.

    A_i is the GRPO advantage; clip-higher eps_low = 0.2, eps_high = 0.28 (the paper's values).
    """
    return _grpo_family(
        batch,
        objective="dapo",
        scale=True,
        epsilon_low=epsilon_low,
        epsilon_high=epsilon_high,
        beta=0.0,
        normaliser="token",
    )


def rloo(
    batch: PolicyBatch, *, epsilon_low: float = 0.2, epsilon_high: float = 0.2, beta: float = 0.0
) -> ObjectiveOutput:
    """RLOO (Ahmadian et al. 2024; TRL ``RLOOTrainer``): L = -1/B sum_i min(rho_i A_i, clip(rho_i) A_i).

    rho_i = exp(sum_t m (logp - old)) (sequence level), r'_i = r_i - beta sum_t m (old - ref) (KL folded into the
    reward; needs ``ref_logp`` when beta > 0, TRL's default is 0.05), A_i = r'_i - mean_{j != i} r'_j.
    """
    _require_groups(batch, "rloo")
    epsilon_low, epsilon_high = _clip_range(epsilon_low, epsilon_high)
    beta = _nonnegative(beta, "beta")
    rewards = batch.rewards
    if beta > 0:
        _require(batch, ("ref_logp",), "rloo", f"beta = {beta} > 0 folds the KL to the reference into the reward")
        rewards = rewards - beta * (batch.masked("old_logp") - batch.masked("ref_logp")).sum(dim=1)
    advantages = leave_one_out(rewards, batch.group_size)
    log_ratio = (batch.masked("logp") - batch.masked("old_logp")).sum(dim=1)
    per_sequence, clipped_low, clipped_high = clipped_surrogate(log_ratio, advantages, epsilon_low, epsilon_high)
    loss = per_sequence.mean()
    stats = {
        "loss": _item(loss),
        **_batch_stats(batch),
        **_clip_stats(advantages, clipped_low, clipped_high, torch.ones_like(advantages)),
    }
    return ObjectiveOutput(loss, stats)


def ppo(
    batch: PolicyBatch,
    *,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    gamma: float = 1.0,
    lam: float = 0.95,
    kl_coef: float = 0.0,
    value_clip: float = 0.2,
    value_coef: float = 0.1,
    whiten: bool = True,
) -> ObjectiveOutput:
    """PPO with a value head: L = token mean of -l(rho_t, A_t) + c_v 1/2 token mean max((V - R)^2, (V_clip - R)^2).

    Per-token reward r_t = r_i 1[t = |o_i|] - beta_kl (old - ref)_t (``kl_coef``; verl ``kl_penalty="kl"``, needs
    ``ref_logp`` when > 0); (A, R) = GAE(r, V_old; gamma, lam) (:func:`generalized_advantages`, on the rollout
    values ``old_values``); A whitened over the batch's tokens when ``whiten``;
    V_clip = V_old + clip(V - V_old, -eps_v, eps_v).
    Defaults follow TRL's PPO (lam 0.95, eps 0.2, eps_v 0.2, c_v 0.1); verl uses gamma = lam = 1, eps_v = 0.5.
    """
    _require(batch, ("values", "old_values"), "ppo", "the value head now and at rollout")
    epsilon_low, epsilon_high = _clip_range(epsilon_low, epsilon_high)
    gamma, lam = _unit_interval(gamma, "gamma"), _unit_interval(lam, "lam")
    kl_coef = _nonnegative(kl_coef, "kl_coef")
    value_clip, value_coef = _positive(value_clip, "value_clip"), _nonnegative(value_coef, "value_coef")
    if not isinstance(whiten, bool):
        raise TypeError(f"whiten: expected a bool, got {type(whiten).__name__}")
    mask, old_logp, old_values = batch.token_mask, batch.masked("old_logp"), batch.masked("old_values")
    token_rewards = _terminal_rewards(batch)
    if kl_coef > 0:
        _require(batch, ("ref_logp",), "ppo", f"kl_coef = {kl_coef} > 0 puts the KL to the reference in the reward")
        token_rewards = token_rewards - kl_coef * (old_logp - batch.masked("ref_logp"))
    advantages, returns = generalized_advantages(token_rewards, old_values, mask, gamma=gamma, lam=lam)
    raw_advantage_mean = _token_mean(advantages, mask)
    if whiten:
        advantages = _masked_whiten(advantages, mask)
    per_token, clipped_low, clipped_high = clipped_surrogate(
        batch.masked("logp") - old_logp, advantages, epsilon_low, epsilon_high
    )
    policy_loss = _token_mean(per_token, mask)
    values = batch.masked("values")
    clipped_values = old_values + (values - old_values).clamp(-value_clip, value_clip)
    clipped_errors = (clipped_values - returns) ** 2
    value_errors = torch.maximum((values - returns) ** 2, clipped_errors)
    value_loss = 0.5 * _token_mean(value_errors, mask)
    loss = policy_loss + value_coef * value_loss
    stats = {
        "loss": _item(loss),
        **_batch_stats(batch),
        **_clip_stats(advantages, clipped_low, clipped_high, mask),
        "raw_advantage_mean": _item(raw_advantage_mean),
        "policy_loss": _item(policy_loss),
        "value_loss": _item(value_loss),
        "value_clip_fraction": _item(_token_mean((clipped_errors > (values - returns) ** 2).to(mask.dtype), mask)),
        "value_mean": _item(_token_mean(values, mask)),
        "return_mean": _item(_token_mean(returns, mask)),
    }
    return ObjectiveOutput(loss, stats)


def pacs(batch: PolicyBatch, *, beta: float = 1.0, balance_classes: bool = True) -> ObjectiveOutput:
    """PACS (Li et al. 2025): L = -1/B sum_i w_i [y_i log sigma(psi_i) + (1 - y_i) log(1 - sigma(psi_i))].

    rhat_i = beta sum_t m (logp - old) (scored against pi_old, not pi_ref), psi_i = rhat_i - mean_{j != i} rhat_j,
    y_i = r_i in {0, 1}, w = :func:`class_balance_weights` (``balance_classes``; else 1). At the on-policy point
    (rhat = 0, sigma = 1/2) the gradient is -beta/B sum_i c_i grad sum_t logp_{i,t} with
    c_i = u_i - mean_{j != i} u_j, u_i = w_i (y_i - 1/2): REINFORCE with a leave-one-out baseline on the weighted
    label (= y_i - mean_{j != i} y_j without weights); all-correct or all-wrong groups give no gradient there.
    """
    _require_groups(batch, "pacs")
    _require_binary_rewards(batch, "pacs")
    beta = _positive(beta, "beta")
    if not isinstance(balance_classes, bool):
        raise TypeError(f"balance_classes: expected a bool, got {type(balance_classes).__name__}")
    scores = beta * (batch.masked("logp") - batch.masked("old_logp")).sum(dim=1)
    logits = leave_one_out(scores, batch.group_size)
    labels = batch.rewards.to(logits.dtype)
    weights = class_balance_weights(labels, batch.group_size) if balance_classes else torch.ones_like(labels)
    loss = F.binary_cross_entropy_with_logits(logits, labels, weight=weights)
    with torch.no_grad():
        accuracy = ((logits > 0).to(labels.dtype) == labels).to(labels.dtype).mean()
    stats = {
        "loss": _item(loss),
        **_batch_stats(batch),
        "score_mean": _item(scores.mean()),
        "logit_abs_mean": _item(logits.abs().mean()),
        "prob_correct_mean": _item(torch.sigmoid(logits).mean()),
        "classifier_accuracy": _item(accuracy),
    }
    return ObjectiveOutput(loss, stats)


def _decomposed(batch, *, objective, correct_advantage, wrong_advantage, rows, epsilon_low, epsilon_high):
    """PPO-clip token mean over ``rows`` (bool (B,)) with A = correct_advantage / wrong_advantage by label."""
    _require_binary_rewards(batch, objective)
    epsilon_low, epsilon_high = _clip_range(epsilon_low, epsilon_high)
    correct = batch.rewards == 1
    logp = batch.masked("logp")
    advantages = correct.to(logp.dtype) * correct_advantage + (~correct).to(logp.dtype) * wrong_advantage
    per_token, clipped_low, clipped_high = clipped_surrogate(
        logp - batch.masked("old_logp"), advantages[:, None].expand_as(logp), epsilon_low, epsilon_high
    )
    kept = batch.token_mask * rows[:, None].to(logp.dtype)
    count = kept.sum()
    # no kept row (e.g. PSR on an all-wrong batch): a zero loss that still carries the graph
    loss = (per_token * kept).sum() / count if count > 0 else (per_token * kept).sum()
    stats = {"loss": _item(loss), **_batch_stats(batch), "kept_fraction": _item(rows.to(logp.dtype).mean())}
    if count > 0:
        stats |= _clip_stats(advantages[:, None].expand_as(logp), clipped_low, clipped_high, kept)
    else:
        stats |= dict.fromkeys(("advantage_mean", "clip_fraction", "clip_fraction_low", "clip_fraction_high"), 0.0)
    return ObjectiveOutput(loss, stats)


def psr(batch: PolicyBatch, *, epsilon_low: float = 0.2, epsilon_high: float = 0.2) -> ObjectiveOutput:
    """PSR (Zhu et al. 2025): PPO-clip with A = +1 on the correct rows only; token mean over their tokens.

    In expectation (one group of G, on-policy) the ascent direction is P(some correct) grad J / J: along grad J.
    """
    return _decomposed(
        batch,
        objective="psr",
        correct_advantage=1.0,
        wrong_advantage=0.0,
        rows=batch.rewards == 1,
        epsilon_low=epsilon_low,
        epsilon_high=epsilon_high,
    )


def nsr(batch: PolicyBatch, *, epsilon_low: float = 0.2, epsilon_high: float = 0.2) -> ObjectiveOutput:
    """NSR (Zhu et al. 2025): PPO-clip with A = -1 on the incorrect rows only; token mean over their tokens.

    In expectation (one group of G, on-policy) the ascent direction is P(some wrong) grad J / (1 - J): along grad J.
    """
    return _decomposed(
        batch,
        objective="nsr",
        correct_advantage=0.0,
        wrong_advantage=-1.0,
        rows=batch.rewards == 0,
        epsilon_low=epsilon_low,
        epsilon_high=epsilon_high,
    )


def w_reinforce(
    batch: PolicyBatch, *, positive_weight: float = 0.1, epsilon_low: float = 0.2, epsilon_high: float = 0.2
) -> ObjectiveOutput:
    """W-REINFORCE (Zhu et al. 2025): PPO-clip, A = lambda on correct and -1 on incorrect rows, token mean over all.

    lambda = ``positive_weight`` (0.1, the paper's and the official README's value). Its expected on-policy ascent
    direction, with one token per answer, is (1 + lambda) grad J.
    """
    positive_weight = _nonnegative(positive_weight, "positive_weight")
    return _decomposed(
        batch,
        objective="w_reinforce",
        correct_advantage=positive_weight,
        wrong_advantage=-1.0,
        rows=torch.ones_like(batch.rewards, dtype=torch.bool),
        epsilon_low=epsilon_low,
        epsilon_high=epsilon_high,
    )


def rover(batch: PolicyBatch, *, rho: float = 1.0) -> ObjectiveOutput:
    """ROVER (He et al. 2025): L = token mean of (Q_t - y_t)^2, Q_t = rho (logp_t - old_t).

    y_t = (r_i - mean_g r) + V_u(t+1) (no gradient), V_u(t+1) = rho (mean_logp_{t+1} - old_mean_logp_{t+1}) at the
    next position (0 after the last token), ``mean_logp`` = the vocabulary mean of log pi(.|q, o_<t), detached here.
    ``rho`` is the Math code's ``rover_t`` (1.0). On-policy (Q = 0, V_u = 0) the gradient is
    -2 rho / (sum m) sum_{i,t} (r_i - mean_g r) grad logp_{i,t}.
    """
    _require_groups(batch, "rover")
    _require(batch, ("mean_logp", "old_mean_logp"), "rover", "the uniform-policy value of the next state")
    rho = _positive(rho, "rho")
    mask = batch.token_mask
    q_values = rho * (batch.masked("logp") - batch.masked("old_logp"))
    uniform_values = rho * (batch.masked("mean_logp").detach() - batch.masked("old_mean_logp"))
    next_values = torch.cat([uniform_values[:, 1:], torch.zeros_like(uniform_values[:, :1])], dim=1)
    centred = group_advantages(batch.rewards, batch.group_size, scale=False)
    targets = (centred[:, None] + next_values) * mask
    loss = _token_mean((q_values - targets) ** 2, mask)
    stats = {
        "loss": _item(loss),
        **_batch_stats(batch),
        "advantage_mean": _item(_token_mean(centred[:, None].expand_as(mask), mask)),
        "q_mean": _item(_token_mean(q_values, mask)),
        "next_value_mean": _item(_token_mean(next_values, mask)),
        "target_mean": _item(_token_mean(targets, mask)),
    }
    return ObjectiveOutput(loss, stats)


OBJECTIVES: dict[str, Objective] = {
    "grpo": grpo,
    "dr_grpo": dr_grpo,
    "dapo": dapo,
    "rloo": rloo,
    "ppo": ppo,
    "pacs": pacs,
    "psr": psr,
    "nsr": nsr,
    "w_reinforce": w_reinforce,
    "rover": rover,
}
"""Objective name -> loss function ``fn(batch, **hyperparameters) -> ObjectiveOutput``."""

_ALWAYS_NEEDED = {"ppo": ("values", "old_values"), "rover": ("mean_logp", "old_mean_logp")}
_KL_COEFFICIENT = {"grpo": "beta", "dr_grpo": "beta", "rloo": "beta", "ppo": "kl_coef"}


def needs(name: str, **hyperparameters) -> set[str]:
    """The optional :class:`PolicyBatch` tensors objective ``name`` needs with these hyperparameters.

    ``ref_logp`` only when its KL coefficient (``beta`` / ``kl_coef``) is > 0 (all default to 0);
    ``values`` and ``old_values`` for PPO; ``mean_logp`` and ``old_mean_logp`` for ROVER.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"name: expected one of {sorted(OBJECTIVES)}, got {name!r}")
    required = set(_ALWAYS_NEEDED.get(name, ()))
    coefficient = _KL_COEFFICIENT.get(name)
    if coefficient is not None:
        default = inspect.signature(OBJECTIVES[name]).parameters[coefficient].default
        if _nonnegative(hyperparameters.get(coefficient, default), coefficient) > 0:
            required.add("ref_logp")
    return required
