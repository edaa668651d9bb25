"""Monte-Carlo episodes of a finite-horizon :class:`~theory.tabular.mdp.TabularMDP` under a Markov policy.

Sampling by the inverse CDF: with the cumulative row c_k = sum_{j<=k} p_j of a distribution p and u ~ U[0, 1),
the sample is the number of k with c_k <= u, i.e. the first k with u < c_k, which has probability p_k. Entries
from the last positive p_k on are set to exactly 1, so rounding in the cumulative sum can never pick a state of
probability zero. The uniforms are drawn up front from one ``numpy.random.Generator``: per episode one for
s_0 ~ rho, then H for s_{h+1} ~ P_h(. | s_h, a_h), then (stochastic policies only; a deterministic one is read
from its action table) H for a_h ~ pi_h(. | s_h). The rewards recorded are the expected rewards r_h(s_h, a_h)
(the model stores no reward noise).

Both methods consume the uniforms identically, so for the same seed they return the same episodes. The numba
kernel steps blocks of episodes and starts each search at a guide table entry (Chen and Asau 1974; Devroye 1986,
ch. III): with m buckets, guide[j] = #{k : c_k <= j / m}, so the answer for u is at least guide[floor(u m)] and a
short forward scan (O(1) expected steps) finds it. The numpy one vectorises over episodes and counts
c_k <= u over the whole gathered rows.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from theory.tabular.mdp import TabularMDP
from theory.tabular.planning import policy_probabilities

ROLLOUT_METHODS = ("auto", "numba", "numpy")


class Rollouts(NamedTuple):
    """``states`` (n, H+1) int, ``actions`` (n, H) int, ``rewards`` (n, H) float; unpacks as a 3-tuple."""

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray


def cumulative_rows(probabilities: np.ndarray) -> np.ndarray:
    """Cumulative sums along the last axis, set to exactly 1 from each row's last positive entry on."""
    cumulative = np.cumsum(probabilities, axis=-1)
    mass_from = np.cumsum(probabilities[..., ::-1], axis=-1)[..., ::-1]
    mass_after = np.zeros_like(mass_from)
    mass_after[..., :-1] = mass_from[..., 1:]
    cumulative[mass_after == 0.0] = 1.0
    return cumulative


GUIDE_BUCKETS_PER_ENTRY = 4
"""Guide buckets per row entry: with 4n buckets a bucket rarely holds a boundary, so searches mostly end at once."""
EPISODE_BLOCK = 8
"""Episodes the numba kernel steps together: their independent searches overlap in the CPU (about 2x here)."""


@numba.njit(cache=True)
def _guide_rows(cumulative, n_buckets):  # pragma: no cover - compiled
    """Guide table (Chen and Asau 1974) of (R, n) cumulative rows: guide[r, j] = #{k : c_rk <= j / n_buckets}."""
    n_rows, n = cumulative.shape
    guide = np.empty((n_rows, n_buckets), dtype=np.int32)
    for r in range(n_rows):
        k = 0
        for j in range(n_buckets):
            while k < n and cumulative[r, k] <= j / n_buckets:
                k += 1
            guide[r, j] = k
    return guide


@numba.njit(cache=True)
def _guide_table(cumulative):  # pragma: no cover - compiled
    """:func:`_guide_rows` over the last axis of an array of cumulative rows, GUIDE_BUCKETS_PER_ENTRY per entry."""
    n = cumulative.shape[-1]
    rows = _guide_rows(cumulative.reshape(-1, n), GUIDE_BUCKETS_PER_ENTRY * n)
    return rows.reshape((*cumulative.shape[:-1], GUIDE_BUCKETS_PER_ENTRY * n))


@numba.njit(cache=True)
def _inverse_cdf(cumulative, guide, u):  # pragma: no cover - compiled
    """#{k : c_k <= u} for one cumulative row, searched from its guide entry (O(1) expected comparisons).

    The backward scan only moves when u * n_buckets rounded up into the next bucket; with it the forward scan
    makes the answer exact from any start. The first forward step is branch-free (it is usually the last)."""
    n_buckets = guide.shape[0]
    k = np.int64(guide[min(int(u * n_buckets), n_buckets - 1)])
    while k > 0 and cumulative[k - 1] > u:
        k -= 1
    k += np.int64(cumulative[k] <= u)
    while cumulative[k] <= u:
        k += 1
    return k


@numba.njit(cache=True)
def _rollouts_numba(
    cumulative_initial,
    policy_actions,
    cumulative_policy,
    cumulative_transitions,
    rewards,
    u_initial,
    u_actions,
    u_transitions,
    states,
    actions,
    gains,
):  # pragma: no cover - compiled
    stochastic = cumulative_policy.shape[0] > 0
    guide_initial = _guide_table(cumulative_initial)
    guide_policy = _guide_table(cumulative_policy)
    guide_transitions = _guide_table(cumulative_transitions)
    n_episodes, horizon = actions.shape
    for start in range(0, n_episodes, EPISODE_BLOCK):
        block = range(start, min(start + EPISODE_BLOCK, n_episodes))
        for i in block:
            states[i, 0] = _inverse_cdf(cumulative_initial, guide_initial, u_initial[i])
        for h in range(horizon):
            ht = h if cumulative_transitions.shape[0] > 1 else 0
            hr = h if rewards.shape[0] > 1 else 0
            for i in block:
                s = states[i, h]
                if stochastic:
                    a = _inverse_cdf(cumulative_policy[h, s], guide_policy[h, s], u_actions[i, h])
                else:
                    a = policy_actions[h, s]
                actions[i, h] = a
                gains[i, h] = rewards[hr, s, a]
                states[i, h + 1] = _inverse_cdf(
                    cumulative_transitions[ht, s, a], guide_transitions[ht, s, a], u_transitions[i, h]
                )


def _rollouts_numpy(
    cumulative_initial,
    policy_actions,
    cumulative_policy,
    cumulative_transitions,
    rewards,
    u_initial,
    u_actions,
    u_transitions,
    states,
    actions,
    gains,
) -> None:
    """The numba kernel's draws, vectorised over episodes: count c_k <= u over each gathered row."""
    stochastic = cumulative_policy.shape[0] > 0
    s = np.sum(cumulative_initial[None, :] <= u_initial[:, None], axis=-1)
    states[:, 0] = s
    for h in range(actions.shape[1]):
        if stochastic:
            a = np.sum(cumulative_policy[h, s] <= u_actions[:, h, None], axis=-1)
        else:
            a = policy_actions[h, s]
        actions[:, h] = a
        gains[:, h] = rewards[h if rewards.shape[0] > 1 else 0, s, a]
        row = cumulative_transitions[h if cumulative_transitions.shape[0] > 1 else 0, s, a]
        s = np.sum(row <= u_transitions[:, h, None], axis=-1)
        states[:, h + 1] = s


def rollouts(
    mdp: TabularMDP,
    policy,
    n_episodes: int,
    seed: int | np.random.Generator,
    *,
    method: str = "auto",
) -> Rollouts:
    """Sample ``n_episodes`` episodes of length H from s_0 ~ rho under ``policy`` (module docstring).

    ``policy`` is (H, S) int (deterministic) or (H, S, A) probabilities; ``seed`` an int or a Generator.
    ``method``: ``"numba"`` (``"auto"``) or ``"numpy"``; both give the same episodes for the same seed.
    The return of episode i is ``rewards[i].sum()``, or sum_h gamma^h rewards[i, h] when the MDP has a discount.
    """
    if not mdp.is_finite_horizon:
        raise ValueError("mdp: rollouts need a finite-horizon MDP (horizon given)")
    if method not in ROLLOUT_METHODS:
        raise ValueError(f"method: expected one of {ROLLOUT_METHODS}, got {method!r}")
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int | np.integer):
        raise TypeError(f"n_episodes: expected a positive int, got {n_episodes!r}")
    if n_episodes < 1:
        raise ValueError(f"n_episodes: expected a positive int, got {n_episodes}")
    if not isinstance(seed, int | np.integer | np.random.Generator) or isinstance(seed, bool):
        raise TypeError(f"seed: expected an int or a numpy.random.Generator, got {seed!r}")
    horizon, n_states, n_actions = mdp.horizon, mdp.n_states, mdp.n_actions
    probabilities = policy_probabilities(policy, n_actions, (horizon, n_states))
    stochastic = probabilities.shape == np.shape(policy)
    rng = np.random.default_rng(seed)
    u_initial = rng.random(n_episodes)
    u_transitions = rng.random((n_episodes, horizon))
    u_actions = rng.random((n_episodes, horizon)) if stochastic else np.empty((n_episodes, 0))
    states = np.empty((n_episodes, horizon + 1), dtype=np.int64)
    actions = np.empty((n_episodes, horizon), dtype=np.int64)
    gains = np.empty((n_episodes, horizon))
    kernel = _rollouts_numpy if method == "numpy" else _rollouts_numba
    kernel(
        cumulative_rows(mdp.initial),
        np.empty((0, n_states), dtype=np.int64) if stochastic else np.asarray(policy, dtype=np.int64),
        cumulative_rows(probabilities) if stochastic else np.empty((0, n_states, n_actions)),
        cumulative_rows(mdp.transitions if mdp.transitions.ndim == 4 else mdp.transitions[None]),
        mdp.rewards if mdp.rewards.ndim == 3 else mdp.rewards[None],
        u_initial,
        u_actions,
        u_transitions,
        states,
        actions,
        gains,
    )
    return Rollouts(states=states, actions=actions, rewards=gains)
