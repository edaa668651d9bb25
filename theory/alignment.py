"""Exact reward-KL trade-offs of KL-regularised alignment and best-of-n on a finite output set.

Setting: a base distribution ``p`` over ``M`` outputs with rewards ``r`` (1-D arrays).

1. KL-regularised RL, ``max_q E_q[r] - beta * KL(q || p)``, is solved by the tilted
   distribution ``phi_beta(y) = p(y) exp(r(y) / beta) / Z(beta)``, ``Z = sum_y p exp(r / beta)``:
   a Bayesian posterior with prior ``p`` and likelihood ``exp(r / beta)`` (Korbak et al.,
   "RL with KL penalties is better viewed as Bayesian inference", arXiv 2205.11275).
2. Along the tilted family ``KL(phi_beta || p) = E_phi[r] / beta - log Z(beta)`` and
   ``dKL/dbeta = -Var_phi(r) / beta^3``, so KL falls from ``KL_max = -log P(r = r_max)``
   (beta -> 0, ``p`` conditioned on the best level) to 0 (beta -> infinity).
3. Best-of-n draws n outputs iid from ``p`` and keeps the highest reward (ties uniformly at
   random). With ``F(v) = P(r <= v)``, ``F(v-) = P(r < v)`` and ``p_v = P(r = v)``,
   ``q(y) = p(y) / p_v * (F(v)^n - F(v-)^n)`` for ``v = r(y)``.
4. For a continuous reward ``KL(q_n || p) = log n - (n - 1) / n``, an upper bound for any
   finite set (Beirami et al., "Theoretical guarantees on the best-of-n alignment policy",
   arXiv 2401.01879).
5. Step 1 makes the tilted distribution optimal at its own KL, so it dominates best-of-n at
   equal KL; Yang et al. ("Asymptotics of Language Model Alignment", arXiv 2404.01730) show that
   the two become equivalent in reward and KL in a large-deviations (long-sequence) limit. With
   a binary reward both keep the within-class ratios of ``p``, so best-of-n *is* a tilted distribution.
6. :func:`solve_beta_for_kl` inverts step 2 (Newton on ``log beta`` inside a bracket), and the
   Monte-Carlo estimators compute the same quantities from samples of ``p`` alone.
7. A population of prompts x with bases ``p_x`` and rewards ``r_x`` (:func:`population_tilted_curve`,
   :func:`population_best_of_n_curve`): maximising the mean reward under a budget on the mean KL,
   ``max sum_x E_{q_x}[r_x]  s.t.  sum_x KL(q_x || p_x) <= B``, is convex, and its Lagrangian is step 1 per prompt
   with ONE beta for all prompts. So the common-beta tilted curve, averaged over prompts, is the exact frontier,
   and best-of-n with a common n (a feasible point at its own mean KL) lies on or below it
   (:func:`frontier_reward` reads the frontier at any mean KL). With a binary reward best-of-n is tilted per
   prompt, each prompt at its own beta; the common-n allocation is what loses to the common-beta one.

Everything runs in log space: rewards are shifted by their maximum before dividing by beta,
outputs with ``p = 0`` keep probability 0, and ``0 log 0 = 0`` in every KL.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp, rel_entr, xlogy

from theory.solver import Callback, SolverResult, iterate

__all__ = [
    "BetaForKLResult",
    "MonteCarloEstimate",
    "TiltMatchingKL",
    "TradeoffCurve",
    "best_of_n_curve",
    "best_of_n_distribution",
    "best_of_n_kl_bound",
    "kl_divergence",
    "monte_carlo_best_of_n",
    "frontier_reward",
    "monte_carlo_tilted",
    "population_best_of_n_curve",
    "population_tilted_curve",
    "solve_beta_for_kl",
    "tilted_curve",
    "tilted_distribution",
]

_SUM_TOLERANCE = 1e-8
_MAX_LOG_BETA_STEP = 2.0  # the solver moves beta by at most a factor e^2 per Newton step


# --------------------------------------------------------------------------- validation


def _real_array(value, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise TypeError(f"{name}: expected an array of real numbers, got dtype {array.dtype}")
    return array.astype(float)


def _probability_vector(value, name: str) -> np.ndarray:
    p = _real_array(value, name)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D array, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name}: expected a probability vector (non-negative, summing to 1), got a non-finite entry")
    if np.any(p < 0):
        raise ValueError(
            f"{name}: expected a probability vector (non-negative, summing to 1), got a negative entry {p.min():.6g}"
        )
    total = p.sum()
    if abs(total - 1.0) > _SUM_TOLERANCE:
        raise ValueError(f"{name}: expected a probability vector (non-negative, summing to 1), got sum {total:.6g}")
    return p / total


def _rewards(value, p: np.ndarray) -> np.ndarray:
    r = _real_array(value, "r")
    if r.shape != p.shape:
        raise ValueError(f"r: expected shape {p.shape} matching p, got {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("r: expected finite rewards")
    return r


def _positive_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a positive float, got {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a positive float, got {value}")
    return float(value)


def _positive_floats(value, name: str) -> np.ndarray:
    array = _real_array(value, name)
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array) & (array > 0)):
        raise ValueError(f"{name}: expected a non-empty 1-D array of positive floats, got {array}")
    return array


def _integer_at_least(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def _integers_at_least_one(value, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name}: expected an integer >= 1 (or an array of them), got dtype {array.dtype}")
    if np.any(array < 1):
        raise ValueError(f"{name}: expected an integer >= 1 (or an array of them), got {array}")
    return array.astype(np.int64)


def _generator(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator (e.g. np.random.default_rng(0)), got {rng!r}")
    return rng


# --------------------------------------------------------------------------- KL and the tilted family


def kl_divergence(q, p) -> float:
    """``KL(q || p) = sum_y q(y) log(q(y) / p(y))`` with ``0 log 0 = 0``; inf if q puts mass where p has none."""
    p = _probability_vector(p, "p")
    q = _real_array(q, "q")
    if q.shape != p.shape:
        raise ValueError(f"q: expected shape {p.shape} matching p, got {q.shape}")
    q = _probability_vector(q, "q")
    return max(float(rel_entr(q, p).sum()), 0.0)


@dataclass(frozen=True)
class _Tilt:
    """Tilted distributions on the support of ``p``, one row per beta, with their KL and reward."""

    phi: np.ndarray  # (K, S) probabilities on the support
    kl: np.ndarray  # (K,) KL(phi_beta || p)
    reward: np.ndarray  # (K,) E_phi[r]


def _tilt(log_p: np.ndarray, r: np.ndarray, betas: np.ndarray) -> _Tilt:
    """Tilt the support (``log_p`` finite) by ``exp(r / beta)`` for every beta, in log space.

    With ``s = (r - r_max) / beta <= 0``: ``log phi = log p + s - lse``, ``lse = logsumexp(log p + s)``
    (``= log Z - r_max / beta``), and ``KL = E_phi[s] - lse`` is step 2 with the shift cancelled.
    """
    with np.errstate(over="ignore"):  # (r - r_max) / tiny beta -> -inf is the intended limit
        scaled = (r - r.max())[None, :] / betas[:, None]
    log_unnormalised = log_p[None, :] + scaled
    lse = logsumexp(log_unnormalised, axis=1)
    phi = np.exp(log_unnormalised - lse[:, None])
    expected_scaled = np.multiply(phi, scaled, out=np.zeros_like(phi), where=phi > 0).sum(axis=1)
    return _Tilt(phi=phi, kl=np.maximum(expected_scaled - lse, 0.0), reward=phi @ r)


def _support(p: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    support = p > 0
    return support, np.log(p[support]), r[support]


def tilted_distribution(p, r, beta) -> np.ndarray:
    """``phi_beta = p exp(r / beta) / Z``, the maximiser of ``E_q[r] - beta KL(q || p)``."""
    p = _probability_vector(p, "p")
    r = _rewards(r, p)
    beta = _positive_float(beta, "beta")
    support, log_p, r_support = _support(p, r)
    phi = np.zeros_like(p)
    phi[support] = _tilt(log_p, r_support, np.array([beta])).phi[0]
    return phi


@dataclass(frozen=True)
class TradeoffCurve:
    """A reward-KL curve: ``kl[i] = KL(q_i || p)`` and ``reward[i] = E_{q_i}[r]`` at ``parameter[i]``.

    ``parameter`` holds the betas of :func:`tilted_curve` or the n of :func:`best_of_n_curve`.
    """

    parameter: np.ndarray
    kl: np.ndarray
    reward: np.ndarray


def tilted_curve(p, r, betas) -> TradeoffCurve:
    """Exact ``(KL(phi_beta || p), E_phi[r])`` for every beta, via ``KL = E_phi[r] / beta - log Z``."""
    p = _probability_vector(p, "p")
    r = _rewards(r, p)
    betas = _positive_floats(betas, "betas")
    _, log_p, r_support = _support(p, r)
    tilt = _tilt(log_p, r_support, betas)
    return TradeoffCurve(parameter=betas, kl=tilt.kl, reward=tilt.reward)


# --------------------------------------------------------------------------- best-of-n


def _reward_levels(p: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rewards on the support of ``p`` (ascending), their masses, and each output's level index."""
    support = p > 0
    values, level_of_support = np.unique(r[support], return_inverse=True)
    masses = np.bincount(level_of_support, weights=p[support], minlength=values.size)
    level = np.full(p.shape, -1)
    level[support] = level_of_support
    return values, masses, level


def _best_of_n_level_probabilities(masses: np.ndarray, ns: np.ndarray) -> np.ndarray:
    """``P(best of n lands on level v) = F(v)^n - F(v-)^n`` for each n (rows) and level (columns).

    Computed as ``F^n * (1 - (1 - p_v / F)^n) = F^n * -expm1(n log1p(-p_v / F))``, which keeps its
    digits when ``F(v-)`` is close to ``F(v)``. ``F`` is a cumulative sum rescaled to end at exactly 1.
    """
    cumulative = np.cumsum(masses)
    cdf = np.clip(cumulative / cumulative[-1], 0.0, 1.0)
    ratio = np.clip(masses / cumulative, 0.0, 1.0)  # p_v / F(v); exactly 1 on the lowest level
    n = ns[:, None].astype(float)
    with np.errstate(divide="ignore"):  # log1p(-1) = -inf on the lowest level: (1 - 1)^n = 0
        return cdf[None, :] ** n * -np.expm1(n * np.log1p(-ratio)[None, :])


def best_of_n_distribution(p, r, n) -> np.ndarray:
    """Law of the best of n iid draws from p (uniform ties): ``q(y) = p(y) / p_v (F(v)^n - F(v-)^n)``."""
    p = _probability_vector(p, "p")
    r = _rewards(r, p)
    n = _integer_at_least(n, "n")
    _, masses, level = _reward_levels(p, r)
    level_probabilities = _best_of_n_level_probabilities(masses, np.array([n]))[0]
    q = np.zeros_like(p)
    support = level >= 0
    q[support] = p[support] / masses[level[support]] * level_probabilities[level[support]]
    return q


def best_of_n_curve(p, r, ns) -> TradeoffCurve:
    """Exact ``(KL(q_n || p), E_{q_n}[r])`` for every n; within a level q is p rescaled, so the KL is per level."""
    p = _probability_vector(p, "p")
    r = _rewards(r, p)
    ns = np.atleast_1d(_integers_at_least_one(ns, "ns"))
    if ns.ndim != 1:
        raise ValueError(f"ns: expected a 1-D array of integers >= 1, got shape {ns.shape}")
    values, masses, _ = _reward_levels(p, r)
    level_probabilities = _best_of_n_level_probabilities(masses, ns)
    kl = rel_entr(level_probabilities, masses[None, :]).sum(axis=1)
    return TradeoffCurve(parameter=ns, kl=np.maximum(kl, 0.0), reward=level_probabilities @ values)


def best_of_n_kl_bound(n):
    """``log n - (n - 1) / n``: KL of best-of-n for a continuous reward, an upper bound on a finite set.

    Returns a float for a scalar ``n`` and an array for an array of n.
    """
    ns = _integers_at_least_one(n, "n").astype(float)
    bound = np.log(ns) - (ns - 1.0) / ns
    return float(bound) if bound.ndim == 0 else bound


# --------------------------------------------------------------------------- a population of prompts


def _population(ps, rs) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(ps) != len(rs) or len(ps) == 0:
        raise ValueError(f"ps, rs: expected the same non-zero number of prompts, got {len(ps)} and {len(rs)}")
    pairs = []
    for index, (p, r) in enumerate(zip(ps, rs, strict=True)):
        p = _probability_vector(p, f"ps[{index}]")
        pairs.append((p, _rewards(r, p)))
    return pairs


def _mean_curve(curves: list[TradeoffCurve]) -> TradeoffCurve:
    return TradeoffCurve(
        parameter=curves[0].parameter,
        kl=np.mean([curve.kl for curve in curves], axis=0),
        reward=np.mean([curve.reward for curve in curves], axis=0),
    )


def population_tilted_curve(ps, rs, betas) -> TradeoffCurve:
    """The exact frontier of step 7: mean over prompts of ``(KL(phi_beta,x || p_x), E[r_x])`` at a common beta."""
    return _mean_curve([tilted_curve(p, r, betas) for p, r in _population(ps, rs)])


def population_best_of_n_curve(ps, rs, ns) -> TradeoffCurve:
    """Best-of-n with one n for every prompt: mean over prompts of ``(KL(q_n,x || p_x), E_{q_n,x}[r_x])``."""
    return _mean_curve([best_of_n_curve(p, r, ns) for p, r in _population(ps, rs)])


def frontier_reward(frontier: TradeoffCurve, kl) -> np.ndarray:
    """The frontier's mean reward at mean KL ``kl`` (linear between its points, which a fine beta grid makes
    accurate: the frontier is concave in KL); beyond its largest KL, its largest reward."""
    order = np.argsort(frontier.kl)
    return np.interp(np.asarray(kl, dtype=float), frontier.kl[order], frontier.reward[order])


# --------------------------------------------------------------------------- solving for beta at a KL budget


class TiltMatchingKL:
    """Stepped solver for beta with ``KL(phi_beta || p) = kl_target``.

    Newton on ``t = log beta`` with ``dKL/dt = -Var_phi(r) / beta^2``, safeguarded by a bracket
    ``[t_lo, t_hi]`` that every iterate shrinks (KL decreases in beta): a Newton step longer than
    ``_MAX_LOG_BETA_STEP`` is shortened, and one leaving the bracket is replaced by bisection in t.
    The start uses the small-KL expansion ``KL ~ Var_p(r) / (2 beta^2)``.
    """

    def __init__(self, p, r, kl_target, *, tol: float = 1e-10) -> None:
        p = _probability_vector(p, "p")
        r = _rewards(r, p)
        self.tol = _positive_float(tol, "tol")
        _, self._log_p, self._r = _support(p, r)
        values, masses, _ = _reward_levels(p, r)
        if values.size < 2:
            raise ValueError("r: expected at least two distinct rewards where p > 0; with one, KL is 0 for every beta")
        self.kl_max = float(-np.log(masses[-1]))
        if isinstance(kl_target, bool) or not isinstance(kl_target, numbers.Real):
            raise TypeError(f"kl_target: expected a float, got {kl_target!r}")
        if not 0 <= kl_target < self.kl_max:
            raise ValueError(
                f"kl_target: expected a value in [0, KL_max), got {kl_target}; the largest achievable KL is "
                f"KL_max = -log P(r = r_max) = {self.kl_max:.6g}, reached only as beta -> 0"
            )
        self.kl_target = float(kl_target)
        self._log_beta_lo, self._log_beta_hi = -np.inf, np.inf
        variance_p = float(np.exp(self._log_p) @ (self._r - np.exp(self._log_p) @ self._r) ** 2)
        self._move_to(0.5 * np.log(variance_p / (2.0 * max(self.kl_target, 0.5 * self.tol))))

    def _move_to(self, log_beta: float) -> None:
        self._log_beta = float(log_beta)
        tilt = _tilt(self._log_p, self._r, np.array([np.exp(log_beta)]))
        self._kl, self._reward = float(tilt.kl[0]), float(tilt.reward[0])
        self._variance = float(tilt.phi[0] @ (self._r - self._reward) ** 2)

    def step(self) -> dict[str, float]:
        t, excess = self._log_beta, self._kl - self.kl_target
        if excess > 0:  # KL too large: beta must grow
            self._log_beta_lo = t
        else:
            self._log_beta_hi = t
        slope = -self._variance / self.beta**2  # dKL/dt
        newton = t - excess / slope if slope < 0 else np.nan
        if np.isfinite(newton) and self._log_beta_lo <= newton <= self._log_beta_hi:
            t_next = t + np.clip(newton - t, -_MAX_LOG_BETA_STEP, _MAX_LOG_BETA_STEP)
        elif np.isfinite(self._log_beta_lo) and np.isfinite(self._log_beta_hi):
            t_next = 0.5 * (self._log_beta_lo + self._log_beta_hi)
        else:  # no usable slope and the bracket is open on the side the root lies
            t_next = t + np.sign(excess) * _MAX_LOG_BETA_STEP
        self._move_to(t_next)
        return {"beta": self.beta, "kl": self._kl, "residual": self.residual}

    @property
    def converged(self) -> bool:
        return self.residual <= self.tol * max(1.0, self.kl_target)

    @property
    def residual(self) -> float:
        return abs(self._kl - self.kl_target)

    @property
    def beta(self) -> float:
        return float(np.exp(self._log_beta))

    @property
    def kl(self) -> float:
        return self._kl

    @property
    def reward(self) -> float:
        return self._reward

    @property
    def kl_derivative(self) -> float:
        """``dKL/dbeta = -Var_phi(r) / beta^3`` at the current beta."""
        return -self._variance / self.beta**3

    @property
    def bracket(self) -> tuple[float, float]:
        """Betas known to lie below and above the solution (0 and inf until found)."""
        return float(np.exp(self._log_beta_lo)), float(np.exp(self._log_beta_hi))


@dataclass(frozen=True, kw_only=True)
class BetaForKLResult(SolverResult):
    """Solution of :func:`solve_beta_for_kl`: beta and the tilted distribution's KL and reward there."""

    beta: float
    kl: float
    reward: float


def solve_beta_for_kl(
    p, r, kl_target, *, tol: float = 1e-10, max_iter: int = 100, callback: Callback | None = None
) -> BetaForKLResult:
    """Find beta with ``KL(phi_beta || p) = kl_target`` for ``0 <= kl_target < -log P(r = r_max)``.

    Converged when ``|KL - kl_target| <= tol * max(1, kl_target)``; history records beta, kl, residual.
    """
    solver = TiltMatchingKL(p, r, kl_target, tol=tol)
    outcome = iterate(solver, max_iter=max_iter, callback=callback)
    return BetaForKLResult(beta=solver.beta, kl=solver.kl, reward=solver.reward, **outcome.fields())


# --------------------------------------------------------------------------- Monte-Carlo estimates from samples of p


@dataclass(frozen=True)
class MonteCarloEstimate:
    """Sample-based estimates of ``KL(q || p)`` and ``E_q[r]``, from ``n_samples`` draws of p."""

    kl: float
    reward: float
    reward_stderr: float
    n_samples: int


def monte_carlo_tilted(p, r, beta, n_samples, rng) -> MonteCarloEstimate:
    """Self-normalised importance sampling of ``phi_beta`` from draws ``y_1..y_N`` of p.

    Weights ``w_i = exp(r_i / beta) / sum_j exp(r_j / beta)``; ``reward = sum_i w_i r_i``;
    ``log Z ~ logmeanexp(r_i / beta)``; ``KL ~ reward / beta - log Z = sum_i w_i log(N w_i) >= 0``.
    The standard error is the delta-method one, ``sqrt(sum_i w_i^2 (r_i - reward)^2)``.
    """
    p = _probability_vector(p, "p")
    r = _rewards(r, p)
    beta = _positive_float(beta, "beta")
    n_samples = _integer_at_least(n_samples, "n_samples")
    rng = _generator(rng)
    rewards = r[rng.choice(p.size, size=n_samples, p=p)]
    with np.errstate(over="ignore"):
        scaled = (rewards - rewards.max()) / beta
    weights = np.exp(scaled - logsumexp(scaled))
    reward = float(weights @ rewards)
    kl = float(xlogy(weights, weights).sum() + np.log(n_samples))
    stderr = float(np.sqrt(weights**2 @ (rewards - reward) ** 2))
    return MonteCarloEstimate(kl=max(kl, 0.0), reward=reward, reward_stderr=stderr, n_samples=n_samples)


def monte_carlo_best_of_n(p, r, n, n_samples, rng) -> MonteCarloEstimate:
    """Best-of-n from ``n_samples // n`` groups of n draws of p (uniform ties among the best).

    ``reward`` is the mean picked reward with stderr ``std / sqrt(groups)``; ``kl`` is the plug-in
    ``KL(empirical law of the picked outputs || p)`` (biased upwards by about ``(M - 1) / (2 groups)``).
    """
    p = _probability_vector(p, "p")
    r = _rewards(r, p)
    n = _integer_at_least(n, "n")
    n_samples = _integer_at_least(n_samples, "n_samples", minimum=2 * n)
    rng = _generator(rng)
    groups = n_samples // n
    draws = rng.choice(p.size, size=(groups, n), p=p)
    draw_rewards = r[draws]
    tie_break = rng.random(draws.shape)
    tie_break[draw_rewards < draw_rewards.max(axis=1, keepdims=True)] = -1.0
    picked = draws[np.arange(groups), tie_break.argmax(axis=1)]
    picked_rewards = r[picked]
    frequencies = np.bincount(picked, minlength=p.size) / groups
    return MonteCarloEstimate(
        kl=kl_divergence(frequencies, p),
        reward=float(picked_rewards.mean()),
        reward_stderr=float(picked_rewards.std(ddof=1) / np.sqrt(groups)),
        n_samples=groups * n,
    )
