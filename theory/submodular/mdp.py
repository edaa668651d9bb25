"""Submodular MDPs (Prajapat et al., "Submodular Reinforcement Learning", ICLR 2024): Markov dynamics, a
history-dependent objective J(pi) = E_tau[F(tau)] with F monotone submodular on the set of visited states.

A trajectory tau = (s_0, ..., s_{H-1}) has H states and H - 1 decisions (the paper's code convention: with the
2 x 2 coverage footprint F(tau) <= 4 + 2 (H - 1) = 2 (H + 1)). Its increments are the marginal gains
F(s_i | tau_{0:i-1}), so F(tau_{0:i}) = sum_{j <= i} gains_j and F(tau) = sum_j gains_j.

Here: batched rollouts of a time-dependent tabular softmax policy pi(a | s, h) = softmax(theta[h, s])_a, policy
evaluation, path likelihoods, and exact references for small instances: every path, the greedy oracle (argmax
marginal gain per step) and the best open-loop path by enumeration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.submodular.objectives import SetFunction


@dataclass(frozen=True)
class SubmodularMDP:
    """Deterministic dynamics ``next_state`` (S, A) ints, objective F on the S states, ``start`` state and
    ``horizon`` H >= 2 (states per trajectory; H - 1 decisions)."""

    next_state: np.ndarray
    objective: SetFunction
    start: int
    horizon: int

    def __post_init__(self) -> None:
        next_state = np.asarray(self.next_state)
        if next_state.ndim != 2 or not np.issubdtype(next_state.dtype, np.integer):
            raise ValueError(f"next_state: expected an (S, A) integer array, got {next_state.dtype} {next_state.shape}")
        n_states = next_state.shape[0]
        if np.any(next_state < 0) or np.any(next_state >= n_states):
            raise ValueError(f"next_state: expected states in [0, {n_states})")
        if not isinstance(self.objective, SetFunction) or self.objective.n_elements != n_states:
            raise ValueError(f"objective: expected a SetFunction on the {n_states} states")
        if (
            isinstance(self.start, bool)
            or not isinstance(self.start, int | np.integer)
            or not 0 <= self.start < n_states
        ):
            raise ValueError(f"start: expected a state in [0, {n_states}), got {self.start!r}")
        if isinstance(self.horizon, bool) or not isinstance(self.horizon, int | np.integer) or self.horizon < 2:
            raise ValueError(f"horizon: expected an integer >= 2 (states per trajectory), got {self.horizon!r}")
        next_state = next_state.astype(np.int64)
        next_state.flags.writeable = False
        object.__setattr__(self, "next_state", next_state)
        object.__setattr__(self, "start", int(self.start))
        object.__setattr__(self, "horizon", int(self.horizon))

    @property
    def n_states(self) -> int:
        return self.next_state.shape[0]

    @property
    def n_actions(self) -> int:
        return self.next_state.shape[1]

    @property
    def logits_shape(self) -> tuple[int, int, int]:
        """(H - 1, S, A): one softmax per decision step and state."""
        return self.horizon - 1, self.n_states, self.n_actions

    def check_logits(self, logits) -> np.ndarray:
        logits = np.asarray(logits, dtype=float)
        if logits.shape != self.logits_shape:
            raise ValueError(f"logits: expected shape {self.logits_shape} (H - 1, S, A), got {logits.shape}")
        if not np.all(np.isfinite(logits)):
            raise ValueError("logits: expected finite values")
        return logits


def softmax_policy(logits: np.ndarray) -> np.ndarray:
    """pi(a | s, h) = exp(theta[h, s, a]) / sum_b exp(theta[h, s, b])."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Trajectories:
    """B trajectories: ``states`` (B, H), ``actions`` (B, H - 1), ``gains`` (B, H) with gains[:, 0] = F({s_0})
    and gains[:, i] = F(s_i | tau_{0:i-1})."""

    states: np.ndarray
    actions: np.ndarray
    gains: np.ndarray

    @property
    def values(self) -> np.ndarray:
        """F(tau) per trajectory."""
        return self.gains.sum(axis=1)

    @property
    def partial_values(self) -> np.ndarray:
        """(B, H): F(tau_{0:i})."""
        return np.cumsum(self.gains, axis=1)


def _follow(mdp: SubmodularMDP, choose, batch_size: int) -> Trajectories:
    """Roll B trajectories forward; ``choose(h, states)`` returns the (B,) actions at decision h."""
    horizon = mdp.horizon
    states = np.empty((batch_size, horizon), dtype=np.int64)
    actions = np.empty((batch_size, horizon - 1), dtype=np.int64)
    gains = np.empty((batch_size, horizon))
    tracker = mdp.objective.tracker(batch_size)
    states[:, 0] = mdp.start
    gains[:, 0] = tracker.add(states[:, 0])
    for h in range(horizon - 1):
        actions[:, h] = choose(h, states[:, h])
        states[:, h + 1] = mdp.next_state[states[:, h], actions[:, h]]
        gains[:, h + 1] = tracker.add(states[:, h + 1])
    return Trajectories(states, actions, gains)


def rollout(mdp: SubmodularMDP, logits, batch_size: int, rng: np.random.Generator) -> Trajectories:
    """``batch_size`` trajectories of the softmax policy of ``logits`` (H - 1, S, A), sampled by inverse CDF."""
    cumulative = np.cumsum(softmax_policy(mdp.check_logits(logits)), axis=-1)
    last = mdp.n_actions - 1

    def sample(h: int, states: np.ndarray) -> np.ndarray:
        uniform = rng.random(states.size)
        return np.minimum((uniform[:, None] > cumulative[h, states]).sum(axis=1), last)

    return _follow(mdp, sample, batch_size)


@dataclass(frozen=True)
class PolicyEvaluation:
    """Mean F(tau) over ``n_samples`` rollouts, its standard error, and F of the greedy (argmax-action) path."""

    mean: float
    stderr: float
    n_samples: int
    greedy_value: float


def evaluate_policy(
    mdp: SubmodularMDP, logits=None, *, n_samples: int = 1000, seed: int | np.random.Generator = 0
) -> PolicyEvaluation:
    """Monte-Carlo value of the softmax policy of ``logits`` (None: the uniform random policy)."""
    logits = np.zeros(mdp.logits_shape) if logits is None else mdp.check_logits(logits)
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples: expected an integer >= 2, got {n_samples!r}")
    values = rollout(mdp, logits, n_samples, np.random.default_rng(seed)).values
    greedy = _follow(mdp, lambda h, states: np.argmax(logits[h, states], axis=1), 1).values[0]
    return PolicyEvaluation(
        mean=float(values.mean()),
        stderr=float(values.std(ddof=1) / np.sqrt(n_samples)),
        n_samples=n_samples,
        greedy_value=float(greedy),
    )


def greedy_path(mdp: SubmodularMDP) -> Trajectories:
    """The greedy oracle: at each step the action whose next state has the largest marginal gain (lowest action
    index on ties). A fixed open-loop path, a baseline for SubPO's "greedily maximise marginal gains"."""
    visited = np.zeros(mdp.n_states, dtype=bool)

    def best(h: int, states: np.ndarray) -> np.ndarray:
        visited[states[0]] = True
        successors = mdp.next_state[states[0]]
        gains = mdp.objective.marginal_gain(np.tile(visited, (mdp.n_actions, 1)), successors)
        return np.array([np.argmax(gains)])

    return _follow(mdp, best, 1)


def all_paths(mdp: SubmodularMDP, *, max_paths: int = 2_000_000) -> Trajectories:
    """Every one of the A^(H-1) action sequences from the start, as trajectories (raises ValueError above
    ``max_paths``)."""
    n_paths = mdp.n_actions ** (mdp.horizon - 1)
    if n_paths > max_paths:
        raise ValueError(f"max_paths: enumerating {n_paths} action sequences exceeds max_paths={max_paths}")
    sequences = np.stack(np.unravel_index(np.arange(n_paths), (mdp.n_actions,) * (mdp.horizon - 1)), axis=1)
    return _follow(mdp, lambda h, states: sequences[:, h], n_paths)


def log_likelihood(logits, trajectories: Trajectories) -> np.ndarray:
    """log pi(tau) = sum_i log pi(a_i | s_i, i) per trajectory (the dynamics are deterministic)."""
    log_policy = np.log(softmax_policy(np.asarray(logits, dtype=float)))
    steps = np.arange(trajectories.actions.shape[1])[None, :]
    return log_policy[steps, trajectories.states[:, :-1], trajectories.actions].sum(axis=1)


def optimal_path(mdp: SubmodularMDP, *, max_paths: int = 2_000_000) -> Trajectories:
    """The best open-loop path max_{a_0..a_{H-2}} F(tau) over :func:`all_paths` (exact: with deterministic
    dynamics an optimal policy follows a single path)."""
    every = all_paths(mdp, max_paths=max_paths)
    best = int(np.argmax(every.values))
    return Trajectories(every.states[best : best + 1], every.actions[best : best + 1], every.gains[best : best + 1])
