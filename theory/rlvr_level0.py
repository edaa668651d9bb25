"""Level-0 RLVR: a two-strategy softmax selector with exact expected updates and exact pass@k.

Why RL with verifiable rewards can raise pass@1 and still lower pass@k at large k (Yue et al. 2025, "Does
Reinforcement Learning Really Incentivize Reasoning Capacity in LLMs Beyond the Base Model?", arXiv 2504.13837),
and why the positive / negative sample reinforcement of Zhu et al. 2025 ("The Surprising Effectiveness of Negative
Reinforcement in LLM Reasoning", arXiv 2506.01347) point the same way in expectation. Derivations:
/work/shared/notes/rlvr.md §1.7 and §3.2; the parameters of :func:`minority_type_model` are the notes'.

1. Model. Prompt types t with frequencies w_t; two strategies A and B; the selector picks B with probability
   pi_t = sigmoid(z_t), z = F theta (row F_t = the type's features). The shared selector of the notes is
   pi(B|x) = sigmoid(theta_0 + theta_1 f(x)), F = [[1, 0], [1, phi]]: f = 0 on the majority type, a weak feature
   f = phi on the minority; separate selectors are F = I. Strategy A solves type t with probability a_t, B with b_t
   (majority: A works best; minority: only B works).
2. Success and objective. P_t = (1 - pi_t) a_t + pi_t b_t, J(theta) = sum_t w_t P_t,
   dP_t/dz_t = pi_t (1 - pi_t) (b_t - a_t), grad J = sum_t w_t (dP_t/dz_t) F_t.
3. pass@k of one prompt from k independent samples: 1 - (1 - P_t)^k; the benchmark value is sum_t w_t of it. A rise
   of every P_t raises pass@k at every k, so a fall at large k needs some type's P_t to fall (the crossover is a
   cross-prompt effect).
4. Updates. A sample (s, r), r in {0, 1}, contributes A * grad log pi(s|t) = A (1[s = B] - pi_t) F_t; a batch update
   is the mean over its P prompts x G samples, theta <- theta + lr * update. Advantages A:
   PSR A = r; NSR A = r - 1; W-REINFORCE A = lambda r - (1 - r) (lambda = ``positive_weight``, 0.1 in the paper);
   Dr.GRPO A_i = r_i - m/G and GRPO A_i = (r_i - m/G) / (sigma_m + 1e-4) within a group of G samples of one prompt
   with m correct, sigma_m = sqrt(m (G - m) / (G (G - 1))) (the Bessel std, as TRL).
5. Expectations (per prompt type, on-policy). E[r g] = dP/dz and E[g] = 0 for g = 1[s = B] - pi, so
   E[PSR] = E[NSR] = grad J and E[W-REINFORCE] = (1 + lambda) grad J. Given m, a correct sample used B with
   probability pi b / P and a wrong one with pi (1 - b) / (1 - P), so E[sum_i A_i g_i | m] =
   c(m) m (G - m) / G * (dP/dz) / (P (1 - P)) with c = 1 (Dr.GRPO) or 1 / (sigma_m + eps) (GRPO); with
   m (G - m) Bin(m; G, P) = G (G - 1) P (1 - P) Bin(m - 1; G - 2, P) the per-sample expectation is
       E[A g] = (G - 1) / G * E_{j ~ Bin(G - 2, P)}[c(j + 1)] * dP/dz.
   Every method is, per type, a positive multiple of dP_t/dz_t: in expectation they differ only in step size per
   type (:func:`update_scale`). Differences beyond that (variance, clipping, Adam, the official PSR/NSR subsetting
   that divides by the kept fraction, about J or 1 - J) are second order and not modelled here.
6. Interference. With shared features the types' steps add up in theta: dz_2 = lr sum_t w_t u_t F_t . F_2. The
   majority's push toward A (u_1 < 0, weight 0.85) outweighs the minority's own push toward B, so P_2 and its
   large-k pass@k fall while pass@1 rises. With separate selectors every P_t rises (for a small enough step).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

__all__ = [
    "GRPO_STD_EPS",
    "METHODS",
    "Level0Run",
    "TwoStrategyModel",
    "compare_methods",
    "doubling_ks",
    "expected_update",
    "minority_type_model",
    "pass_at_k",
    "sample_advantages",
    "sampled_update",
    "simulate",
    "update_scale",
]

METHODS = ("psr", "nsr", "w_reinforce", "dr_grpo", "grpo")
GROUP_METHODS = ("dr_grpo", "grpo")
GRPO_STD_EPS = 1e-4
"""Added to the group std in GRPO advantages (TRL; :data:`lab.rlvr.objectives.STD_EPS`)."""


# --------------------------------------------------------------------------- validation


def _float_array(value, name: str, ndim: int) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise TypeError(f"{name}: expected real numbers, got dtype {array.dtype}")
    array = array.astype(float)
    if array.ndim != ndim or array.size == 0:
        raise ValueError(f"{name}: expected a non-empty {ndim}-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected finite values")
    return array


def _probabilities(value, name: str) -> np.ndarray:
    array = _float_array(value, name, 1)
    if np.any(array < 0) or np.any(array > 1):
        raise ValueError(f"{name}: expected probabilities in [0, 1], got {array.tolist()}")
    return array


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value}")
    return int(value)


def _method(method: str, group_size: int) -> str:
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if method in GROUP_METHODS and group_size < 2:
        raise ValueError(f"group_size: {method} needs a group of at least 2 samples per prompt, got {group_size}")
    return method


def _non_negative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0 or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class TwoStrategyModel:
    """Item 1 of the module docstring: ``type_weights`` w (n,), ``success_a`` a and ``success_b`` b (n,),
    ``features`` F (n, d) with z = F theta, the base policy's ``theta`` (d,) and a name per type."""

    type_weights: np.ndarray
    success_a: np.ndarray
    success_b: np.ndarray
    features: np.ndarray
    theta: np.ndarray
    type_names: tuple[str, ...]

    def __post_init__(self) -> None:
        weights = _probabilities(self.type_weights, "type_weights")
        if abs(weights.sum() - 1) > 1e-9:
            raise ValueError(f"type_weights: expected a probability vector summing to 1, got sum {weights.sum()!r}")
        n_types = weights.size
        success_a, success_b = _probabilities(self.success_a, "success_a"), _probabilities(self.success_b, "success_b")
        features, theta = _float_array(self.features, "features", 2), _float_array(self.theta, "theta", 1)
        for name, array in (("success_a", success_a), ("success_b", success_b)):
            if array.size != n_types:
                raise ValueError(f"{name}: expected one value per prompt type ({n_types}), got {array.size}")
        if features.shape != (n_types, theta.size):
            raise ValueError(f"features: expected shape (types, parameters) = {(n_types, theta.size)}, "
                             f"got {features.shape}")  # fmt: skip
        if len(self.type_names) != n_types:
            raise ValueError(f"type_names: expected {n_types} names, got {self.type_names!r}")
        for name, array in (("type_weights", weights), ("success_a", success_a), ("success_b", success_b),
                            ("features", features), ("theta", theta)):  # fmt: skip
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        object.__setattr__(self, "type_names", tuple(self.type_names))

    def prob_b(self, theta=None) -> np.ndarray:
        """pi_t = sigmoid(F_t theta) per type (the base policy's when ``theta`` is None)."""
        return expit(self.features @ _parameters(self, theta))

    def success(self, theta=None) -> np.ndarray:
        """P_t = (1 - pi_t) a_t + pi_t b_t per type."""
        pi = self.prob_b(theta)
        return (1 - pi) * self.success_a + pi * self.success_b

    def success_slope(self, theta=None) -> np.ndarray:
        """dP_t/dz_t = pi_t (1 - pi_t) (b_t - a_t) per type."""
        pi = self.prob_b(theta)
        return pi * (1 - pi) * (self.success_b - self.success_a)

    def objective(self, theta=None) -> float:
        """J = sum_t w_t P_t, the expected pass@1."""
        return float(self.type_weights @ self.success(theta))

    def objective_gradient(self, theta=None) -> np.ndarray:
        """grad J = sum_t w_t dP_t/dz_t F_t."""
        return (self.type_weights * self.success_slope(theta)) @ self.features


def _parameters(model: TwoStrategyModel, theta) -> np.ndarray:
    """``theta`` checked against the model (its base parameters when None)."""
    if theta is None:
        return model.theta
    theta = _float_array(theta, "theta", 1)
    if theta.size != model.theta.size:
        raise ValueError(f"theta: expected {model.theta.size} parameters, got {theta.size}")
    return theta


def minority_type_model(
    *,
    minority_weight: float = 0.15,
    feature: float = 0.5,
    base_prob_b: float = 0.25,
    majority_success: tuple[float, float] = (0.9, 0.2),
    minority_success: tuple[float, float] = (0.0, 0.5),
    shared: bool = True,
) -> TwoStrategyModel:
    """The notes' §3.2 model: a majority type (A succeeds 0.9, B 0.2) and a minority type of weight 0.15 that only B
    solves (0.5); the base picks B with probability 0.25 on both. ``shared``: pi(B|x) = sigmoid(theta_0 + theta_1 f)
    with f = 0 / ``feature``; otherwise one free logit per type (F = I)."""
    if not 0 < minority_weight < 1:
        raise ValueError(f"minority_weight: expected a number in (0, 1), got {minority_weight!r}")
    if not 0 < base_prob_b < 1:
        raise ValueError(f"base_prob_b: expected a number in (0, 1), got {base_prob_b!r}")
    base_logit = float(logit(base_prob_b))
    if shared:
        features, theta = np.array([[1.0, 0.0], [1.0, feature]]), np.array([base_logit, 0.0])
    else:
        features, theta = np.eye(2), np.full(2, base_logit)
    return TwoStrategyModel(
        type_weights=np.array([1 - minority_weight, minority_weight]),
        success_a=np.array([majority_success[0], minority_success[0]]),
        success_b=np.array([majority_success[1], minority_success[1]]),
        features=features,
        theta=theta,
        type_names=("majority", "minority"),
    )


# --------------------------------------------------------------------------- pass@k


def doubling_ks(largest: int) -> np.ndarray:
    """k = 1, 2, 4, ..., up to ``largest`` (the log2 grid of Yue et al.)."""
    largest = _positive_int(largest, "largest")
    return 2 ** np.arange(int(math.log2(largest)) + 1)


def pass_at_k(success, ks) -> np.ndarray:
    """1 - (1 - P)^k for every P of ``success`` (any shape) and k of ``ks`` (1-D), shape success.shape + (K,);
    computed as -expm1(k log1p(-P))."""
    success = np.asarray(success, dtype=float)
    ks = np.asarray(ks)
    if ks.ndim != 1 or ks.size == 0 or ks.dtype.kind not in "iu" or np.any(ks < 1):
        raise ValueError(f"ks: expected a non-empty 1-D array of integers >= 1, got {ks!r}")
    if np.any(success < 0) or np.any(success > 1):
        raise ValueError("success: expected probabilities in [0, 1]")
    with np.errstate(divide="ignore"):  # log1p(-1) = -inf gives pass@k = 1, as it should
        return -np.expm1(ks * np.log1p(-success)[..., None])


# --------------------------------------------------------------------------- updates


def sample_advantages(method: str, rewards, *, positive_weight: float = 0.1) -> np.ndarray:
    """Item 4's advantages of 0/1 ``rewards`` shaped (prompts, G); groups are rows."""
    rewards = np.asarray(rewards, dtype=float)
    if rewards.ndim != 2 or not np.all((rewards == 0) | (rewards == 1)):
        raise ValueError(f"rewards: expected a (prompts, G) array of 0/1, got shape {rewards.shape}")
    method = _method(method, rewards.shape[1])
    if method == "psr":
        return rewards
    if method == "nsr":
        return rewards - 1
    if method == "w_reinforce":
        return _non_negative(positive_weight, "positive_weight") * rewards - (1 - rewards)
    centred = rewards - rewards.mean(axis=1, keepdims=True)
    if method == "dr_grpo":
        return centred
    return centred / (rewards.std(axis=1, ddof=1, keepdims=True) + GRPO_STD_EPS)


def update_scale(method: str, success, *, group_size: int = 4, positive_weight: float = 0.1) -> np.ndarray:
    """Item 5: the factor c_t >= 0 with E[A g] = c_t dP_t/dz_t per sample, for each success probability P_t."""
    success = np.asarray(success, dtype=float)
    group_size = _positive_int(group_size, "group_size")
    method = _method(method, group_size)
    if method in ("psr", "nsr"):
        return np.ones_like(success)
    if method == "w_reinforce":
        return np.full_like(success, 1 + _non_negative(positive_weight, "positive_weight"))
    G = group_size
    j = np.arange(G - 1)  # j ~ Bin(G - 2, P) more correct samples beside the one fixed: m = j + 1
    m = j + 1
    p = success[..., None]
    binomial = np.array([math.comb(G - 2, i) for i in range(G - 1)]) * p**j * (1 - p) ** (G - 2 - j)
    c = np.ones(G - 1) if method == "dr_grpo" else 1 / (np.sqrt(m * (G - m) / (G * (G - 1))) + GRPO_STD_EPS)
    return (G - 1) / G * (binomial @ c)


def expected_update(
    model: TwoStrategyModel, theta, method: str, *, group_size: int = 4, positive_weight: float = 0.1
) -> np.ndarray:
    """E[update] = sum_t w_t c_t dP_t/dz_t F_t (item 5), the mean over an infinite batch."""
    theta = _parameters(model, theta)
    scale = update_scale(method, model.success(theta), group_size=group_size, positive_weight=positive_weight)
    return (model.type_weights * scale * model.success_slope(theta)) @ model.features


def sampled_update(
    model: TwoStrategyModel,
    theta,
    method: str,
    rng: np.random.Generator,
    *,
    n_prompts: int = 64,
    group_size: int = 4,
    positive_weight: float = 0.1,
) -> np.ndarray:
    """One batch of item 4: ``n_prompts`` prompt types drawn from w, G strategies and verdicts each, the mean over the
    P x G samples of A (1[s = B] - pi) F_t."""
    theta = _parameters(model, theta)
    n_prompts, group_size = _positive_int(n_prompts, "n_prompts"), _positive_int(group_size, "group_size")
    types = rng.choice(model.type_weights.size, size=n_prompts, p=model.type_weights)
    pi = model.prob_b(theta)[types][:, None]
    uses_b = rng.random((n_prompts, group_size)) < pi
    solve_rate = np.where(uses_b, model.success_b[types][:, None], model.success_a[types][:, None])
    rewards = (rng.random((n_prompts, group_size)) < solve_rate).astype(float)
    advantages = sample_advantages(method, rewards, positive_weight=positive_weight)
    per_prompt = (advantages * (uses_b - pi)).mean(axis=1)
    return per_prompt @ model.features[types] / n_prompts


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Level0Run:
    """One method's trajectory: per step 0..T (step 0 = the base) the parameters ``theta`` (T+1, d), ``prob_b`` and
    ``success`` per type (T+1, n), ``pass_at_k`` per type (T+1, n, K) at ``ks`` and ``overall`` (T+1, K), the
    type-weighted benchmark value. ``sampled``: stochastic batches instead of exact expectations."""

    method: str
    ks: np.ndarray
    type_names: tuple[str, ...]
    theta: np.ndarray
    prob_b: np.ndarray
    success: np.ndarray
    pass_at_k: np.ndarray
    overall: np.ndarray
    sampled: bool


def simulate(
    model: TwoStrategyModel,
    method: str,
    *,
    steps: int = 200,
    lr: float = 0.05,
    group_size: int = 4,
    positive_weight: float = 0.1,
    ks=None,
    n_prompts: int | None = None,
    seed: int | np.random.Generator | None = None,
) -> Level0Run:
    """``steps`` updates theta <- theta + lr * update from the model's base theta: the exact expectation
    (:func:`expected_update`) when ``n_prompts`` is None, else SGD on sampled batches of ``n_prompts`` x
    ``group_size`` (:func:`sampled_update`, randomness from ``seed`` only). ``ks`` defaults to 1, 2, 4, ..., 256."""
    steps = _positive_int(steps, "steps")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 < lr < math.inf:
        raise ValueError(f"lr: expected a finite number > 0, got {lr!r}")
    _method(method, _positive_int(group_size, "group_size"))
    ks = doubling_ks(256) if ks is None else np.asarray(ks)
    options = dict(group_size=group_size, positive_weight=positive_weight)
    if n_prompts is None:
        if seed is not None:
            raise ValueError("seed: exact expectations use no randomness; pass n_prompts for sampled batches")

        def update(theta):
            return expected_update(model, theta, method, **options)
    else:
        if seed is None:
            raise ValueError("seed: sampled batches need an explicit seed or numpy Generator")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

        def update(theta):
            return sampled_update(model, theta, method, rng, n_prompts=n_prompts, **options)

    thetas = np.empty((steps + 1, model.theta.size))
    thetas[0] = model.theta
    for step in range(steps):
        thetas[step + 1] = thetas[step] + lr * update(thetas[step])
    prob_b = expit(thetas @ model.features.T)
    success = (1 - prob_b) * model.success_a + prob_b * model.success_b
    per_type = pass_at_k(success, ks)
    return Level0Run(
        method=method,
        ks=ks,
        type_names=model.type_names,
        theta=thetas,
        prob_b=prob_b,
        success=success,
        pass_at_k=per_type,
        overall=np.einsum("t,stk->sk", model.type_weights, per_type),
        sampled=n_prompts is not None,
    )


def compare_methods(model: TwoStrategyModel, methods=METHODS, **options) -> dict[str, Level0Run]:
    """:func:`simulate` of each method with the same ``options`` (a sampled run per method gets the same seed)."""
    return {method: simulate(model, method, **options) for method in methods}
