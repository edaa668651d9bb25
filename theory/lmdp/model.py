"""Latent MDPs (Kwon et al. 2021) in the normalisation of Zhou, Wang & Du (arXiv 2210.11604, ICML 2023).

An LMDP is M MDPs on shared states s in {0..S-1}, actions a in {0..A-1} and horizon H: context m has mixing
weight w_m > 0, start distribution nu_m, transitions P_m(s' | s, a) and a deterministic reward r_m(s, a) (or
r_{m,h}(s, a) per step) in [0, 1]. Each episode draws m ~ w, hidden from the agent; it sees s_0 ~ nu_m, plays
a_0, sees s_1 ~ P_m(. | s_0, a_0), ... for H steps, and learns m only after the episode ("context in hindsight").
The total reward of every episode is at most 1 (the paper rescales per-step rewards by 1/H to get this).

Generators: :func:`random_lmdp` (Dirichlet transitions, or deterministic ones), :func:`revealing_lmdp` (the past
reveals the context, the present does not: history-dependent policies beat Markov ones) and :func:`deep_sea_lmdp`
(deep-sea chains per context where certainty equivalence with a self-loop default never explores).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from theory.tabular.mdp import TabularMDP, as_float_array, check_probability_rows, validate_horizon
from theory.tabular.rollouts import cumulative_rows

RETURN_TOLERANCE = 1e-9
"""How far above 1 the largest total reward of an episode may be (rounding in user-built rewards)."""


def max_episode_reward(transitions: np.ndarray, step_rewards: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """The largest total reward of a feasible episode in each context, shape (M,).

    U_H = 0, U_h(s) = max_a [r_{m,h}(s, a) + max_{s': P_m(s'|s,a) > 0} U_{h+1}(s')], maximised over the start
    states with nu_m(s) > 0: a maximum over trajectories of positive probability, not an expectation.
    """
    n_contexts, horizon, n_states, n_actions = step_rewards.shape
    feasible = transitions > 0
    best = np.zeros((n_contexts, n_states))
    for h in range(horizon - 1, -1, -1):
        reachable_best = np.max(np.where(feasible, best[:, None, None, :], -np.inf), axis=-1)
        best = np.max(step_rewards[:, h] + reachable_best, axis=-1)
    return np.max(np.where(initial > 0, best, -np.inf), axis=-1)


@dataclass(frozen=True, eq=False)
class LatentMDP:
    """A latent MDP (module docstring): ``weights`` w (M,) positive on the simplex, ``transitions`` (M, S, A, S),
    ``rewards`` (M, S, A) stationary or (M, H, S, A) per step, in [0, 1], ``initial`` (M, S), ``horizon`` H.

    Every feasible episode must collect a total reward of at most 1 (:func:`max_episode_reward`). The arrays are
    stored as read-only float64 copies; ``step_rewards`` is the (M, H, S, A) view of the rewards and
    ``max_return`` the largest total reward of a feasible episode.
    """

    weights: np.ndarray
    transitions: np.ndarray
    rewards: np.ndarray
    initial: np.ndarray
    horizon: int
    step_rewards: np.ndarray = field(init=False, repr=False)
    max_return: float = field(init=False)
    _cumulative: tuple[np.ndarray, np.ndarray, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        weights = as_float_array(self.weights, "weights")
        transitions = as_float_array(self.transitions, "transitions")
        rewards = as_float_array(self.rewards, "rewards")
        initial = as_float_array(self.initial, "initial")
        horizon = validate_horizon(self.horizon)
        if horizon is None:
            raise TypeError("horizon: expected an int >= 1, got None")
        if weights.ndim != 1 or weights.size < 1:
            raise ValueError(f"weights: expected a 1-D array of M >= 1 mixing weights, got shape {weights.shape}")
        check_probability_rows(weights, "weights")
        if np.any(weights <= 0):
            raise ValueError(f"weights: expected every mixing weight > 0 (drop unused contexts), got {weights}")
        n_contexts = weights.size
        if transitions.ndim != 4 or transitions.shape[0] != n_contexts or transitions.shape[1] != transitions.shape[3]:
            raise ValueError(
                f"transitions: expected shape (M, S, A, S) with M = {n_contexts} from weights, got {transitions.shape}"
            )
        check_probability_rows(transitions, "transitions")
        n_states, n_actions = transitions.shape[1:3]
        stationary, per_step = (n_contexts, n_states, n_actions), (n_contexts, horizon, n_states, n_actions)
        if rewards.shape not in (stationary, per_step):
            raise ValueError(f"rewards: expected shape {stationary} or {per_step}, got {rewards.shape}")
        if rewards.min() < 0 or rewards.max() > 1:
            raise ValueError(f"rewards: expected values in [0, 1], got [{rewards.min():.6g}, {rewards.max():.6g}]")
        if initial.shape != (n_contexts, n_states):
            raise ValueError(f"initial: expected shape {(n_contexts, n_states)}, got {initial.shape}")
        check_probability_rows(initial, "initial")
        step_rewards = np.array(np.broadcast_to(rewards[:, None] if rewards.ndim == 3 else rewards, per_step))
        step_rewards.setflags(write=False)
        best = max_episode_reward(transitions, step_rewards, initial)
        if best.max() > 1 + RETURN_TOLERANCE:
            m = int(np.argmax(best))
            raise ValueError(
                f"rewards: the total reward of an episode must be at most 1; context {m} collects {best[m]:.6g} "
                f"along a feasible trajectory (divide the rewards by {best.max():.6g})"
            )
        cumulative = tuple(cumulative_rows(array) for array in (weights, initial, transitions))
        for name, value in (
            ("weights", weights),
            ("transitions", transitions),
            ("rewards", rewards),
            ("initial", initial),
            ("horizon", horizon),
            ("step_rewards", step_rewards),
            ("max_return", float(best.max())),
            ("_cumulative", cumulative),
        ):
            object.__setattr__(self, name, value)

    @property
    def n_contexts(self) -> int:
        return self.weights.size

    @property
    def n_states(self) -> int:
        return self.transitions.shape[1]

    @property
    def n_actions(self) -> int:
        return self.transitions.shape[2]

    def context_mdp(self, context: int) -> TabularMDP:
        """Context m's MDP (P_m, r_m, nu_m, H): what an agent that knew m would face."""
        if isinstance(context, bool) or not isinstance(context, int | np.integer) or not 0 <= context < self.n_contexts:
            raise ValueError(f"context: expected an int in [0, {self.n_contexts}), got {context!r}")
        return TabularMDP(self.transitions[context], self.rewards[context], self.initial[context], horizon=self.horizon)

    # Sampling by the inverse CDF (theory.tabular.rollouts): u ~ U[0, 1) picks the first k with u < c_k.

    def draw_context(self, u: float) -> int:
        """m ~ w from a uniform u in [0, 1)."""
        return int(np.searchsorted(self._cumulative[0], u, side="right"))

    def draw_start(self, context: int, u: float) -> int:
        """s_0 ~ nu_m from a uniform u."""
        return int(np.searchsorted(self._cumulative[1][context], u, side="right"))

    def draw_next(self, context: int, state: int, action: int, u: float) -> int:
        """s' ~ P_m(. | s, a) from a uniform u."""
        return int(np.searchsorted(self._cumulative[2][context, state, action], u, side="right"))


def _generator(seed) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer | np.random.Generator):
        raise TypeError(f"seed: expected an int or a numpy.random.Generator, got {seed!r}")
    return np.random.default_rng(seed)


def _size(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name}: expected an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def random_lmdp(
    n_contexts: int = 2,
    n_states: int = 3,
    n_actions: int = 2,
    horizon: int = 4,
    *,
    concentration: float = 0.3,
    deterministic: bool = False,
    seed: int | np.random.Generator = 0,
) -> LatentMDP:
    """A random LMDP: w ~ Dirichlet(1), nu_m ~ Dirichlet(concentration), P_m(. | s, a) ~ Dirichlet(concentration)
    (or, with ``deterministic``, a single uniformly drawn next state per (m, s, a)), r_m(s, a) ~ U[0, 1) / H.

    Small concentrations give sparse, nearly deterministic rows. Rewards of at most 1/H per step keep every
    episode's total reward below 1.
    """
    n_contexts, n_states = _size(n_contexts, "n_contexts"), _size(n_states, "n_states")
    n_actions, horizon = _size(n_actions, "n_actions"), _size(horizon, "horizon")
    if not (np.isscalar(concentration) and np.isfinite(concentration) and concentration > 0):
        raise ValueError(f"concentration: expected a positive Dirichlet parameter, got {concentration!r}")
    rng = _generator(seed)
    weights = rng.dirichlet(np.ones(n_contexts))
    initial = rng.dirichlet(np.full(n_states, concentration), size=n_contexts)
    if deterministic:
        transitions = np.eye(n_states)[rng.integers(n_states, size=(n_contexts, n_states, n_actions))]
    else:
        transitions = rng.dirichlet(np.full(n_states, concentration), size=(n_contexts, n_states, n_actions))
    rewards = rng.random((n_contexts, n_states, n_actions)) / horizon
    return LatentMDP(weights, transitions, rewards, initial, horizon)


def revealing_lmdp(reveal_probability: float = 0.8, weights=(0.5, 0.5)) -> LatentMDP:
    """Two contexts where only the past tells them apart: S = 3, A = 2, H = 3 (designed; own construction).

    Step 0, state 0: action 0 ("probe") moves context m to state 1 + m with probability p and to the other
    signal state otherwise; action 1 ("skip") moves to state 1 or 2 with probability 1/2 each, in both contexts.
    Step 1: every action returns to state 0. Step 2, state 0: action a pays 1 in context a, 0 otherwise.
    Nothing else pays. At step 2 the state is always 0, so a Markov policy plays one action there:
    V_Markov = max(w_0, w_1). Probing and then answering the likelier context given the signal is optimal:
    V* = max(w_0 p, w_1 (1 - p)) + max(w_0 (1 - p), w_1 p). Knowing m pays 1 always: V_oracle = 1.
    """
    if not (np.isscalar(reveal_probability) and 0 <= reveal_probability <= 1):
        raise ValueError(f"reveal_probability: expected a probability in [0, 1], got {reveal_probability!r}")
    p = float(reveal_probability)
    transitions = np.zeros((2, 3, 2, 3))
    for m in range(2):
        transitions[m, 0, 0, 1 + m], transitions[m, 0, 0, 2 - m] = p, 1 - p
        transitions[m, 0, 1, 1:] = 0.5
        transitions[m, 1:, :, 0] = 1.0
    rewards = np.zeros((2, 3, 3, 2))
    rewards[0, 2, 0, 0] = rewards[1, 2, 0, 1] = 1.0
    initial = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    return LatentMDP(weights, transitions, rewards, initial, 3)


def deep_sea_lmdp(depth: int = 4, n_contexts: int = 2, distractor: float | None = None) -> LatentMDP:
    """Deep-sea chains, one per context, where certainty equivalence never explores (designed; own construction,
    after bsuite's ``deep_sea``).

    States are the columns 0..N-1 (N = ``depth`` = H), every episode starts in column 0, A = 2. In context m the
    "right" action at column c is 0 at c = 0 (all contexts share the first step) and bit (c - 1) mod b of m at
    c >= 1 (b = max(1, ceil(log2 M)) bits, so the contexts' chains differ); "right" moves to min(c + 1, N - 1),
    the other action to max(c - 1, 0) and pays the distractor eps (default 0.1 / H). Going right in the last
    column pays 1, which only the all-right trajectory reaches, at step H - 1.

    With known rewards and the zero-count default P(. | s, a) = self-loop, certainty equivalence sees every
    action stay put, so it prefers the paid distractor at column 0 forever: its value stays at H eps while
    V* >= 1 / M (its regret grows linearly). An optimistic learner's bonus makes untried actions worth 1.
    """
    depth, n_contexts = _size(depth, "depth", 2), _size(n_contexts, "n_contexts")
    epsilon = 0.1 / depth if distractor is None else distractor
    if not (np.isscalar(epsilon) and 0 <= epsilon * depth <= 1):
        raise ValueError(f"distractor: expected eps in [0, 1/H] = [0, {1 / depth:.6g}], got {distractor!r}")
    n_bits = max(1, int(np.ceil(np.log2(n_contexts))))
    transitions = np.zeros((n_contexts, depth, 2, depth))
    rewards = np.zeros((n_contexts, depth, 2))
    for m in range(n_contexts):
        for c in range(depth):
            right = 0 if c == 0 else (m >> ((c - 1) % n_bits)) & 1
            transitions[m, c, right, min(c + 1, depth - 1)] = 1.0
            transitions[m, c, 1 - right, max(c - 1, 0)] = 1.0
            rewards[m, c, 1 - right] = epsilon
            if c == depth - 1:
                rewards[m, c, right] = 1.0
    initial = np.zeros((n_contexts, depth))
    initial[:, 0] = 1.0
    return LatentMDP(np.full(n_contexts, 1.0 / n_contexts), transitions, rewards, initial, depth)
