"""Evaluation of a policy on a prompt set: pass@k curves, empirical support, entropies, strategy usage, KL to base.

Inputs are plain arrays: one row per prompt, n sampled answers per prompt (strings), their 0/1 verifier rewards,
optionally a strategy label per answer, per-token entropies with a mask, and per-sequence summed log-probs under the
policy and the base model. No model objects.

1. pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code", arXiv 2107.03374): with c correct
   among n samples, pass@k = 1 - C(n-c, k) / C(n, k), unbiased for k <= n, exactly 1 when n - c < k. Computed as
       C(n-c, k) / C(n, k) = prod_{j<c} (1 - k/(n-j)) = prod_{j<k} (1 - c/(n-j)),
   i.e. prod_{j<b} (1 - a/(n-j)) with a = max(c, k), b = min(c, k): b terms of log1p summed, then -expm1. Every
   term lies in (0, 1), so there is no overflow and no cancellation (n = 1024, c = 5, k = 256 agrees with exact
   big-integer binomials to 1e-15). Vectorised over problems, rows need different numbers of terms; the unused
   slots are clamped to a safe denominator before the log and then dropped with ``where`` (multiplying a NaN or
   -inf by a 0 mask would still give NaN).
2. Curves (Yue et al. 2025, "Does Reinforcement Learning Really Incentivize Reasoning Capacity in LLMs Beyond the
   Base Model?", arXiv 2504.13837): k = 1, 2, 4, ..., n on a log2 axis, every k from the same n samples, mean over
   problems; intervals by bootstrapping PROBLEMS (percentile interval of the mean). Never a with-replacement
   bootstrap "best@k" over samples: 1 correct of 4 would give best@4 = 1 - (3/4)^4 = 0.68 instead of 1.
3. Support and entropies (Wu et al. 2025, "The Invisible Leash", arXiv 2507.14843): the empirical support of a
   prompt is its set of distinct correct answers among the samples (compared between models as preserved / shrunk /
   expanded); answer-level entropy -sum_a p(a) log p(a) of the empirical answer distribution (nats), against
   token-level entropy, the mean next-token entropy over generated tokens: the latter can rise while the former
   falls.
4. KL to the base model: KL(pi || pi_base) = E_{y~pi}[log pi(y) - log pi_base(y)], a Monte-Carlo mean over the
   policy's own samples with its standard error s / sqrt(N).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


def _integer_array(name: str, values) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected integers, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
        raise ValueError(f"{name}: expected integers, got {values!r}")
    return array.astype(np.int64)


def pass_at_k(n: ArrayLike, c: ArrayLike, k: ArrayLike) -> float | np.ndarray:
    """Unbiased pass@k = 1 - C(n-c, k) / C(n, k) (Chen et al. 2021), elementwise over broadcast n, c, k.

    ``n`` samples per problem of which ``c`` are correct, 1 <= k <= n. Returns a float for scalar inputs.
    """
    n, c, k = _integer_array("n", n), _integer_array("c", c), _integer_array("k", k)
    if np.any(n < 1):
        raise ValueError(f"n: expected positive sample counts, got a minimum of {n.min()}")
    if np.any(c < 0):
        raise ValueError(f"c: expected non-negative correct counts, got a minimum of {c.min()}")
    try:
        n, c, k = np.broadcast_arrays(n, c, k)
    except ValueError as exc:
        raise ValueError(f"c: shape {c.shape} and k: shape {k.shape} do not broadcast with n's {n.shape}") from exc
    if np.any(c > n):
        raise ValueError(f"c: expected at most n correct samples, got c = {c[c > n][0]} > n = {n[c > n][0]}")
    if np.any(k < 1) or np.any(k > n):
        bad = (k < 1) | (k > n)
        raise ValueError(f"k: expected 1 <= k <= n, got k = {k[bad][0]} with n = {n[bad][0]}")
    always_pass = n - c < k
    a = np.maximum(c, k)
    n_terms = np.where(always_pass, 0, np.minimum(c, k))
    log_fail = np.zeros(n.shape)
    for j in range(int(n_terms.max(initial=0))):
        active = j < n_terms
        # active terms have n - j > a; the others get a + 1 so that log1p stays finite before `where` drops them
        ratio = a / np.where(active, n - j, a + 1)
        log_fail += np.where(active, np.log1p(-ratio), 0.0)
    result = np.where(always_pass, 1.0, 0.0 - np.expm1(log_fail))
    return float(result) if result.ndim == 0 else result


def doubling_ks(n: int) -> np.ndarray:
    """k = 1, 2, 4, ... below n, then n itself (the log2 grid of Yue et al.)."""
    if not (isinstance(n, int | np.integer) and n >= 1):
        raise ValueError(f"n: expected a positive integer, got {n!r}")
    powers = 2 ** np.arange(int(n).bit_length())
    return np.unique(np.append(powers[powers < n], n))


def _check_seed(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        return np.random.default_rng(int(seed))
    raise TypeError(f"seed: expected an int or a numpy.random.Generator, got {type(seed).__name__}")


def bootstrap_interval(
    per_problem_values, n_boot: int = 1000, confidence: float = 0.95, seed: int | np.random.Generator = 0
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over problems, resampling problems (rows) with replacement.

    ``per_problem_values`` is (P,) or (P, K) (one column per k); returns (low, high) as floats or (K,) arrays.
    A resample of P problems with replacement is a Multinomial(P, 1/P) count per problem, so each replicate mean is
    counts @ values / P.
    """
    values = np.asarray(per_problem_values, dtype=float)
    if values.ndim not in (1, 2) or values.shape[0] < 1 or not np.all(np.isfinite(values)):
        raise ValueError(f"per_problem_values: expected a finite (P,) or (P, K) array with P >= 1, got {values.shape}")
    if not (isinstance(n_boot, int | np.integer) and n_boot >= 1):
        raise ValueError(f"n_boot: expected a positive integer, got {n_boot!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a level in (0, 1), got {confidence!r}")
    rng = _check_seed(seed)
    n_problems = values.shape[0]
    counts = rng.multinomial(n_problems, np.full(n_problems, 1.0 / n_problems), size=n_boot)
    replicate_means = counts @ values / n_problems
    tail = (1 - confidence) / 2
    low, high = np.quantile(replicate_means, [tail, 1 - tail], axis=0)
    return (float(low), float(high)) if values.ndim == 1 else (low, high)


@dataclass(frozen=True)
class PassAtKCurve:
    """pass@k per problem (P, K) at ``ks`` (K,); ``mean`` is the benchmark curve."""

    ks: np.ndarray
    per_problem: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        return self.per_problem.mean(axis=0)

    def interval(
        self, n_boot: int = 1000, confidence: float = 0.95, seed: int | np.random.Generator = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bootstrap interval over problems of each point of the curve."""
        return bootstrap_interval(self.per_problem, n_boot, confidence, seed)

    def subset(self, rows) -> PassAtKCurve:
        """The curve of the problems selected by ``rows`` (a boolean mask or indices)."""
        return PassAtKCurve(self.ks, self.per_problem[rows])


def pass_at_k_curve(correct_counts, n, ks=None) -> PassAtKCurve:
    """pass@k of every problem at each k in ``ks`` (default :func:`doubling_ks` of the smallest n).

    ``correct_counts`` (P,) correct samples per problem, ``n`` the samples per problem (int or (P,)).
    """
    correct = _integer_array("correct_counts", correct_counts)
    if correct.ndim != 1 or correct.size < 1:
        raise ValueError(f"correct_counts: expected a non-empty (P,) array, got shape {correct.shape}")
    n = _integer_array("n", n)
    if n.ndim == 0:
        n = np.full(correct.shape, n)
    if n.shape != correct.shape:
        raise ValueError(f"n: expected an int or shape {correct.shape}, got shape {n.shape}")
    smallest_n = int(n.min())
    ks = doubling_ks(smallest_n) if ks is None else np.unique(_integer_array("ks", ks))
    if ks.ndim != 1 or ks.size < 1 or ks[0] < 1 or ks[-1] > smallest_n:
        raise ValueError(f"ks: expected values in 1..{smallest_n} (the smallest n), got {ks!r}")
    return PassAtKCurve(ks, pass_at_k(n[:, None], correct[:, None], ks[None, :]))


def _per_prompt(name: str, rows) -> list[list]:
    """``rows`` as one non-empty list per prompt (a bare string or flat list of strings is rejected)."""
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence | np.ndarray):
        raise TypeError(f"{name}: expected one sequence per prompt, got {type(rows).__name__}")
    prompts = []
    for row in rows:
        if isinstance(row, str | bytes) or not isinstance(row, Sequence | np.ndarray):
            raise TypeError(f"{name}: expected one sequence per prompt, got an element of type {type(row).__name__}")
        if len(row) == 0:
            raise ValueError(f"{name}: every prompt needs at least one sample")
        prompts.append(list(row))
    if not prompts:
        raise ValueError(f"{name}: expected at least one prompt")
    return prompts


@dataclass(frozen=True)
class Support:
    """Empirical support (Invisible Leash): the distinct correct answers of each prompt."""

    answers: tuple[frozenset, ...]

    @property
    def counts(self) -> np.ndarray:
        """Number of distinct correct answers per prompt (P,)."""
        return np.array([len(found) for found in self.answers], dtype=np.int64)

    @property
    def coverage(self) -> float:
        """Fraction of prompts with at least one correct answer (pass@n)."""
        return float(np.mean(self.counts > 0))

    def union(self, other: Support) -> Support:
        """Prompt-wise union with another sample of the same prompts (e.g. base and RL pooled)."""
        _check_same_prompts(self, other)
        return Support(tuple(mine | theirs for mine, theirs in zip(self.answers, other.answers, strict=True)))


def _check_same_prompts(first: Support, second: Support) -> None:
    if len(first.answers) != len(second.answers):
        raise ValueError(f"other: expected support on {len(first.answers)} prompts, got {len(second.answers)}")


def empirical_support(answers_per_prompt, correct_per_prompt) -> Support:
    """Distinct correct answers per prompt; answers are compared as given (canonicalise them before)."""
    answers = _per_prompt("answers_per_prompt", answers_per_prompt)
    correct = _per_prompt("correct_per_prompt", correct_per_prompt)
    if [len(row) for row in answers] != [len(row) for row in correct]:
        raise ValueError("correct_per_prompt: expected one flag per answer, with the shape of answers_per_prompt")
    return Support(
        tuple(
            frozenset(answer for answer, ok in zip(row, flags, strict=True) if ok)
            for row, flags in zip(answers, correct, strict=True)
        )
    )


def support_change(base: Support, model: Support) -> dict[str, np.ndarray]:
    """Per-prompt counts of correct answers the model preserved (in both), shrunk (base only), expanded (model only)."""
    _check_same_prompts(base, model)
    pairs = list(zip(base.answers, model.answers, strict=True))
    return {
        "preserved": np.array([len(b & m) for b, m in pairs], dtype=np.int64),
        "shrunk": np.array([len(b - m) for b, m in pairs], dtype=np.int64),
        "expanded": np.array([len(m - b) for b, m in pairs], dtype=np.int64),
    }


def _plug_in_entropy(labels: Sequence[Hashable]) -> float:
    frequencies = np.array(list(Counter(labels).values()), dtype=float) / len(labels)
    return float(-np.sum(frequencies * np.log(frequencies)))


def answer_entropy(answers) -> np.ndarray:
    """Plug-in entropy -sum_a p(a) log p(a) (nats) of each prompt's empirical answer distribution, (P,)."""
    return np.array([_plug_in_entropy(row) for row in _per_prompt("answers", answers)])


def token_entropy(entropies, mask, axis=None) -> float | np.ndarray:
    """Mean next-token entropy over valid positions: sum(mask * H) / sum(mask), reduced over ``axis`` (None: all).

    ``entropies`` holds H(pi(. | q, o_<t)) per position; ``mask`` is 1 on generated tokens (same shape).
    """
    entropies = np.asarray(entropies, dtype=float)
    mask = np.asarray(mask)
    if mask.shape != entropies.shape:
        raise ValueError(f"mask: expected the shape of entropies {entropies.shape}, got {mask.shape}")
    if not np.all((mask == 0) | (mask == 1)):
        raise ValueError("mask: expected 0/1 or boolean entries")
    valid = mask.astype(bool)
    if not np.all(np.isfinite(entropies[valid])) or np.any(entropies[valid] < 0):
        raise ValueError("entropies: expected finite non-negative values on valid positions")
    counts = valid.sum(axis=axis)
    if np.any(counts == 0):
        raise ValueError("mask: every reduced slice needs at least one valid position")
    means = np.where(valid, entropies, 0.0).sum(axis=axis) / counts
    return float(means) if np.ndim(means) == 0 else means


def _flat_labels(strategies) -> list[str]:
    flat = []
    for item in strategies:
        flat.extend([item] if isinstance(item, str) else item)
    if not flat or not all(isinstance(label, str) for label in flat):
        raise TypeError("strategies: expected a non-empty sequence of string labels (flat or one list per prompt)")
    return flat


def strategy_usage(strategies) -> dict[str, float]:
    """Fraction of samples carrying each strategy label (labels sorted; fractions sum to 1)."""
    counts = Counter(_flat_labels(strategies))
    total = sum(counts.values())
    return {label: counts[label] / total for label in sorted(counts)}


@dataclass(frozen=True)
class KLEstimate:
    """Monte-Carlo KL(pi || pi_base) with its standard error over ``n_samples`` sequences."""

    value: float
    standard_error: float
    n_samples: int


def _log_ratios(logp_policy_seq, logp_base_seq) -> np.ndarray:
    policy = np.asarray(logp_policy_seq, dtype=float)
    base = np.asarray(logp_base_seq, dtype=float)
    if policy.size < 1 or not np.all(np.isfinite(policy)) or np.any(policy > 0):
        raise ValueError("logp_policy_seq: expected finite non-positive log-probabilities, at least one")
    if base.shape != policy.shape or not np.all(np.isfinite(base)) or np.any(base > 0):
        raise ValueError(f"logp_base_seq: expected finite non-positive log-probabilities of shape {policy.shape}")
    return policy - base


def kl_to_base(logp_policy_seq, logp_base_seq) -> KLEstimate:
    """KL(pi || pi_base) ~ mean of log pi(y) - log pi_base(y) over sequences y ~ pi; s.e. = std(ddof=1) / sqrt(N).

    Arguments are summed log-probs of the same sampled sequences under the policy and under the base model.
    """
    ratios = _log_ratios(logp_policy_seq, logp_base_seq).ravel()
    error = float(ratios.std(ddof=1) / np.sqrt(ratios.size)) if ratios.size > 1 else float("nan")
    return KLEstimate(float(ratios.mean()), error, int(ratios.size))


@dataclass(frozen=True, kw_only=True)
class EvaluationReport:
    """One model on one prompt set: per-prompt arrays (P,) and a summary under the lab's shared metric names.

    ``token_entropy`` and ``kl_to_ref`` are None when their inputs were not given; their summary keys are then
    absent. ``strategy_usage`` maps each label to its per-prompt fraction.
    """

    n_samples: int
    correct_counts: np.ndarray
    curve: PassAtKCurve
    curve_low: np.ndarray
    curve_high: np.ndarray
    confidence: float
    support: Support
    answer_entropy: np.ndarray
    token_entropy: np.ndarray | None = None
    overall_token_entropy: float | None = None
    kl_to_ref: np.ndarray | None = None
    kl: KLEstimate | None = None
    strategy_usage: dict[str, np.ndarray] | None = None

    @property
    def n_prompts(self) -> int:
        return int(self.correct_counts.size)

    @property
    def summary(self) -> dict[str, float]:
        """``pass@{k}`` for each k (``pass@1`` always), ``support``, ``answer_entropy``, ``entropy``, ``kl_to_ref``,
        ``strategy/{label}``: means over prompts (token entropy is the mean over all valid tokens)."""
        summary = {f"pass@{k}": float(value) for k, value in zip(self.curve.ks, self.curve.mean, strict=True)}
        summary["support"] = float(self.support.counts.mean())
        summary["answer_entropy"] = float(self.answer_entropy.mean())
        if self.overall_token_entropy is not None:
            summary["entropy"] = self.overall_token_entropy
        if self.kl is not None:
            summary["kl_to_ref"] = self.kl.value
        for label, fractions in (self.strategy_usage or {}).items():
            summary[f"strategy/{label}"] = float(fractions.mean())
        return summary


def _check_grid(name: str, values, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(values)
    if array.shape[: len(shape)] != shape:
        raise ValueError(f"{name}: expected leading shape {shape} (prompts, samples), got {array.shape}")
    return array


def evaluate(
    answers,
    rewards,
    strategies=None,
    *,
    token_entropies=None,
    token_mask=None,
    logp_policy_seq=None,
    logp_base_seq=None,
    ks=None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator = 0,
) -> EvaluationReport:
    """Build an :class:`EvaluationReport` from P prompts x n samples.

    ``answers`` P lists of n answers; ``rewards`` (P, n) verifier rewards in {0, 1} (or bool); ``strategies``
    P lists of n string labels or None; ``token_entropies``/``token_mask`` (P, n, T); ``logp_policy_seq`` and
    ``logp_base_seq`` (P, n) summed log-probs of each sample under the policy and the base model. ``ks`` defaults
    to 1, 2, 4, ..., n and always includes 1; the curve's bootstrap intervals resample prompts.
    """
    answer_rows = _per_prompt("answers", answers)
    rewards = np.asarray(rewards)
    if rewards.ndim != 2 or rewards.shape != (len(answer_rows), len(answer_rows[0])):
        raise ValueError(f"rewards: expected shape (prompts, samples) = ({len(answer_rows)}, n), got {rewards.shape}")
    if any(len(row) != rewards.shape[1] for row in answer_rows):
        raise ValueError(f"answers: expected {rewards.shape[1]} answers for every prompt")
    if not np.all((rewards == 0) | (rewards == 1)):
        raise ValueError("rewards: expected 0/1 or boolean verifier rewards")
    correct = rewards.astype(bool)
    n_samples = rewards.shape[1]
    ks = doubling_ks(n_samples) if ks is None else np.union1d(_integer_array("ks", ks), [1])
    curve = pass_at_k_curve(correct.sum(axis=1), n_samples, ks)
    low, high = curve.interval(n_boot, confidence, seed)
    extras = {}
    if (token_entropies is None) != (token_mask is None):
        raise ValueError("token_mask: give token_entropies and token_mask together, or neither")
    if token_entropies is not None:
        entropies = _check_grid("token_entropies", token_entropies, rewards.shape)
        extras["token_entropy"] = token_entropy(entropies, token_mask, axis=(1, 2))
        extras["overall_token_entropy"] = token_entropy(entropies, token_mask)
    if (logp_policy_seq is None) != (logp_base_seq is None):
        raise ValueError("logp_base_seq: give logp_policy_seq and logp_base_seq together, or neither")
    if logp_policy_seq is not None:
        policy = _check_grid("logp_policy_seq", logp_policy_seq, rewards.shape)
        extras["kl_to_ref"] = _log_ratios(policy, logp_base_seq).mean(axis=1)
        extras["kl"] = kl_to_base(policy, logp_base_seq)
    if strategies is not None:
        label_rows = _per_prompt("strategies", strategies)
        if any(len(row) != n_samples for row in label_rows) or len(label_rows) != len(answer_rows):
            raise ValueError(f"strategies: expected {n_samples} labels for each of {len(answer_rows)} prompts")
        per_prompt = [strategy_usage(row) for row in label_rows]
        labels = sorted(set().union(*per_prompt))
        extras["strategy_usage"] = {
            label: np.array([usage.get(label, 0.0) for usage in per_prompt]) for label in labels
        }
    return EvaluationReport(
        n_samples=n_samples,
        correct_counts=correct.sum(axis=1),
        curve=curve,
        curve_low=low,
        curve_high=high,
        confidence=confidence,
        support=empirical_support(answer_rows, correct),
        answer_entropy=answer_entropy(answer_rows),
        **extras,
    )


def minority_breakdown(report: EvaluationReport, is_minority) -> dict[str, PassAtKCurve]:
    """The report's pass@k curve split by prompt type: {"minority": ..., "majority": ...}.

    The view in which RL can raise pass@1 overall yet lower large-k pass@k on the rare prompt type.
    """
    minority = np.asarray(is_minority)
    if minority.shape != (report.n_prompts,) or minority.dtype != bool:
        raise ValueError(f"is_minority: expected a boolean array of shape ({report.n_prompts},), got {minority!r}")
    if minority.all() or not minority.any():
        raise ValueError("is_minority: expected prompts of both types")
    return {"minority": report.curve.subset(minority), "majority": report.curve.subset(~minority)}
