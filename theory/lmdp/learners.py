"""Regret minimisation in a latent MDP with the context revealed in hindsight (Zhou, Wang & Du, arXiv 2210.11604).

Episode loop (:func:`run_learner`), k = 1..K:

1. Plan: the learner turns its counts into a history policy pi_k (:mod:`theory.lmdp.planning`).
2. Act: the episode runs on the true LMDP: m ~ w, s_0 ~ nu_m, a_h = pi_k(s_0, a_0, ..., s_h),
   s_{h+1} ~ P_m(. | s_h, a_h).
3. Observe: m is revealed at the end; the counts N_m(s, a, s'), n_m(s, a) = sum_s' N_m(s, a, s'), the start
   counts and the context counts c_m are updated.
4. Score: regret_k = V* - V^{pi_k}, with V* and V^{pi_k} computed exactly on the true model (no Monte Carlo).

Rewards are deterministic, as in the paper's setup (r_m : S x A -> [0, 1]), and known to the learners here
(whether the paper assumes them known was not checked); the learners estimate w, nu and P:
P_hat_m(. | s, a) = N_m(s, a, .) / n_m(s, a), with a self-loop (or uniform) zero-count default when
n_m(s, a) = 0; nu_hat_m = start counts / c_m (uniform when c_m = 0); w_hat_m = (c_m + 1) / (k + M).

Learners (one planner; they differ in the bonus b of the alpha-vector backup, or in the model they plan on):

* ``ModelBasedLearner("bernstein")``, value-optimistic with the variance of the next alpha vector under P_hat:
  b_m(tau, a) = c [sqrt(V(P_hat_m(. | s, a), alpha_m(tau a .)) iota / n) + iota / n],
  with the paper's log term iota = 2 ln(2 M S A H K / delta) and its V(x, y) = sum_i x_i (y_i - x.y)^2.
  [The bonus form and the constant c are a reconstruction (shared notes 2.2), not read off the paper.]
* ``ModelBasedLearner("hoeffding")``: b = c sqrt(iota / n), blind to the variance.
* ``ModelBasedLearner("none")``: certainty equivalence, b = 0.
  With a bonus, an untried (m, s, a) gets Q = 1 (the truncation level). No bonus is added at the last step: the
  rewards are known, so there is nothing to be optimistic about, and a bonus there only buys useless exploration.
* ``PosteriorSampling`` (PSRL, Osband et al. 2013), per context: P_tilde_m(. | s, a) ~ Dirichlet(prior +
  N_m(s, a, .)), nu_tilde_m ~ Dirichlet(prior + start counts), w_tilde ~ Dirichlet(1 + c); plan exactly on the
  sampled LMDP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.lmdp.model import LatentMDP
from theory.lmdp.planning import history_starts, kernel_arrays, optimal_policy, solve_tree
from theory.solver import Callback, SolverResult, iterate

BONUSES = ("bernstein", "hoeffding", "none")
UNVISITED = ("self_loop", "uniform")


@dataclass(frozen=True)
class Episode:
    """One episode: the hidden ``context``, ``states`` (H + 1,), ``actions`` (H,), ``rewards`` (H,)."""

    context: int
    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray


def sample_episode(lmdp: LatentMDP, actions: np.ndarray, rng: np.random.Generator) -> Episode:
    """Play the history-policy table ``actions`` (N,) for one episode on ``lmdp`` with H + 2 uniforms from rng."""
    u = rng.random(lmdp.horizon + 2)
    starts = history_starts(lmdp.n_states, lmdp.n_actions, lmdp.horizon)
    context = lmdp.draw_context(u[0])
    state = history = lmdp.draw_start(context, u[1])
    states, taken, rewards = [state], [], []
    for h in range(lmdp.horizon):
        action = int(actions[starts[h] + history])
        rewards.append(lmdp.step_rewards[context, h, state, action])
        state = lmdp.draw_next(context, state, action, u[h + 2])
        history = (history * lmdp.n_actions + action) * lmdp.n_states + state
        states.append(state)
        taken.append(action)
    return Episode(context, np.array(states), np.array(taken), np.array(rewards))


class EpisodeCounts:
    """Counts from revealed episodes: ``transitions`` N (M, S, A, S), ``starts`` (M, S), ``contexts`` c (M,)."""

    def __init__(self, n_contexts: int, n_states: int, n_actions: int) -> None:
        self.transitions = np.zeros((n_contexts, n_states, n_actions, n_states))
        self.starts = np.zeros((n_contexts, n_states))
        self.contexts = np.zeros(n_contexts)

    @property
    def episodes(self) -> int:
        return int(self.contexts.sum())

    @property
    def visits(self) -> np.ndarray:
        """n_m(s, a), shape (M, S, A)."""
        return self.transitions.sum(axis=-1)

    def record(self, episode: Episode) -> None:
        m = episode.context
        self.contexts[m] += 1
        self.starts[m, episode.states[0]] += 1
        np.add.at(self.transitions[m], (episode.states[:-1], episode.actions, episode.states[1:]), 1.0)

    def estimate(self, unvisited: str = "self_loop") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(w_hat, nu_hat, P_hat) of the module docstring."""
        n_contexts, n_states, n_actions, _ = self.transitions.shape
        weights = (self.contexts + 1) / (self.episodes + n_contexts)
        seen = self.contexts > 0
        initial = np.where(seen[:, None], self.starts / np.maximum(self.contexts, 1)[:, None], 1.0 / n_states)
        visits = self.visits
        if unvisited == "self_loop":
            default = np.broadcast_to(np.eye(n_states)[None, :, None, :], self.transitions.shape)
        else:
            default = np.full(self.transitions.shape, 1.0 / n_states)
        transitions = np.where(visits[..., None] > 0, self.transitions / np.maximum(visits, 1)[..., None], default)
        return weights, initial, transitions


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name}: expected a positive number, got {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    return float(value)


class _CountingLearner:
    """Shared episode bookkeeping: ``start`` stores the known rewards and fresh counts, ``observe`` records."""

    def start(self, rewards: np.ndarray, n_episodes: int) -> None:
        """Begin a run of ``n_episodes`` episodes with the known rewards (M, H, S, A)."""
        self.rewards_ = np.array(rewards, dtype=float)  # a writable copy (theory.lmdp.planning.solve_tree)
        n_contexts, horizon, n_states, n_actions = self.rewards_.shape
        self.n_episodes_ = int(n_episodes)
        self.counts_ = EpisodeCounts(n_contexts, n_states, n_actions)

    def observe(self, episode: Episode) -> None:
        """Record an episode whose context was revealed at its end."""
        self.counts_.record(episode)


class ModelBasedLearner(_CountingLearner):
    """Plan on the empirical model with a bonus: ``"bernstein"``, ``"hoeffding"`` or ``"none"`` (certainty
    equivalence); ``scale`` c, confidence ``delta``, zero-count default ``unvisited`` (module docstring)."""

    def __init__(
        self, bonus: str = "bernstein", *, scale: float = 1.0, delta: float = 0.1, unvisited: str = "self_loop"
    ) -> None:
        if bonus not in BONUSES:
            raise ValueError(f"bonus: expected one of {BONUSES}, got {bonus!r}")
        if unvisited not in UNVISITED:
            raise ValueError(f"unvisited: expected one of {UNVISITED}, got {unvisited!r}")
        self.bonus, self.unvisited = bonus, unvisited
        self.scale, self.delta = _positive(scale, "scale"), _positive(delta, "delta")
        if self.delta >= 1:
            raise ValueError(f"delta: expected a confidence level in (0, 1), got {delta!r}")

    @property
    def name(self) -> str:
        return "certainty_equivalence" if self.bonus == "none" else self.bonus

    def log_term(self) -> float:
        """iota = 2 ln(2 M S A H K / delta)."""
        n_contexts, horizon, n_states, n_actions = self.rewards_.shape
        return 2 * np.log(2 * n_contexts * n_states * n_actions * horizon * self.n_episodes_ / self.delta)

    def bonus_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(hoeffding, slope, offset), each (M, S, A), for the planner's b = hoeffding + slope sqrt(V) + offset;
        None for certainty equivalence. Untried (m, s, a) get offset 1, i.e. Q = 1."""
        if self.bonus == "none":
            return None
        visits = self.counts_.visits
        tried = visits > 0
        ratio = self.log_term() / np.maximum(visits, 1)
        zero = np.zeros_like(visits)
        untried = np.where(tried, 0.0, 1.0)
        if self.bonus == "hoeffding":
            return np.where(tried, self.scale * np.sqrt(ratio), 0.0), zero, untried
        return zero, np.where(tried, self.scale * np.sqrt(ratio), 0.0), np.where(tried, self.scale * ratio, 1.0)

    def plan(self, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """The history policy (action table) for the next episode and its planned (optimistic) value."""
        weights, initial, transitions = self.counts_.estimate(self.unvisited)
        value, actions, _ = solve_tree(weights, initial, transitions, self.rewards_, bonus=self.bonus_terms())
        return actions, value


class PosteriorSampling(_CountingLearner):
    """PSRL with an independent Dirichlet(``prior`` + counts) posterior per context and (s, a) (module docstring)."""

    def __init__(self, prior: float = 1.0) -> None:
        self.prior = _positive(prior, "prior")

    @property
    def name(self) -> str:
        return "psrl"

    @staticmethod
    def _dirichlet(rng: np.random.Generator, concentration: np.ndarray) -> np.ndarray:
        """Independent Dirichlet draws along the last axis (normalised Gamma variables)."""
        draws = rng.standard_gamma(concentration)
        return draws / draws.sum(axis=-1, keepdims=True)

    def plan(self, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        counts = self.counts_
        weights = self._dirichlet(rng, 1.0 + counts.contexts)
        initial = self._dirichlet(rng, self.prior + counts.starts)
        transitions = self._dirichlet(rng, self.prior + counts.transitions)
        value, actions, _ = solve_tree(weights, initial, transitions, self.rewards_)
        return actions, value


def loglog_slope(cumulative_regret, k_from: int, k_to: int) -> float:
    """(ln R(k_to) - ln R(k_from)) / (ln k_to - ln k_from), R(k) = ``cumulative_regret[k - 1]``: 1 for linear
    regret, 1/2 for sqrt(K), 0 once the regret stops growing."""
    cumulative = np.asarray(cumulative_regret, dtype=float)
    for name, k in (("k_from", k_from), ("k_to", k_to)):
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= cumulative.size:
            raise ValueError(f"{name}: expected an episode count in [1, {cumulative.size}], got {k!r}")
    if k_from >= k_to:
        raise ValueError(f"k_from: expected k_from < k_to, got {k_from} >= {k_to}")
    low, high = cumulative[k_from - 1], cumulative[k_to - 1]
    if low <= 0:
        raise ValueError(f"cumulative_regret: expected R(k_from) > 0 for a log-log slope, got {low}")
    return float(np.log(high / low) / np.log(k_to / k_from))


class LearningRun:
    """One learner on one LMDP for ``n_episodes`` episodes; ``step()`` plays one episode (module docstring).

    Accessors: ``optimal_value`` V*, ``episode`` (episodes played), ``cumulative_regret``, ``actions`` (the last
    policy's action table), ``learner``. ``converged`` is True once all episodes have been played.
    """

    def __init__(self, lmdp: LatentMDP, learner, n_episodes: int, seed: int | np.random.Generator) -> None:
        if not isinstance(lmdp, LatentMDP):
            raise TypeError(f"lmdp: expected a LatentMDP, got {type(lmdp).__name__}")
        if not all(callable(getattr(learner, method, None)) for method in ("start", "plan", "observe")):
            raise TypeError(f"learner: expected an object with start, plan and observe, got {type(learner).__name__}")
        if isinstance(n_episodes, bool) or not isinstance(n_episodes, int | np.integer) or n_episodes < 1:
            raise ValueError(f"n_episodes: expected a positive int, got {n_episodes!r}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer | np.random.Generator):
            raise TypeError(f"seed: expected an int or a numpy.random.Generator, got {seed!r}")
        self.lmdp, self.learner, self.n_episodes = lmdp, learner, int(n_episodes)
        self.rng = np.random.default_rng(seed)
        self.optimal_value = optimal_policy(lmdp).value
        self._true_model = kernel_arrays(lmdp)
        learner.start(lmdp.step_rewards, self.n_episodes)
        self.episode, self.cumulative_regret = 0, 0.0
        self.actions: np.ndarray | None = None
        self._policy_value = np.nan

    @property
    def converged(self) -> bool:
        return self.episode >= self.n_episodes

    def policy_value(self, actions: np.ndarray) -> float:
        """V^pi on the true model for an action table (reused while the policy does not change)."""
        if self.actions is None or not np.array_equal(actions, self.actions):
            self._policy_value = solve_tree(*self._true_model, cap=np.inf, actions=actions)[0]
        return self._policy_value

    def step(self) -> dict[str, float]:
        actions, planned_value = self.learner.plan(self.rng)
        value = self.policy_value(actions)
        self.actions = actions
        episode = sample_episode(self.lmdp, actions, self.rng)
        self.learner.observe(episode)
        regret = self.optimal_value - value
        self.episode += 1
        self.cumulative_regret += regret
        return {
            "regret": regret,
            "cumulative_regret": self.cumulative_regret,
            "policy_value": value,
            "planned_value": planned_value,
            "context": episode.context,
            "episode_return": float(episode.rewards.sum()),
        }


@dataclass(frozen=True, kw_only=True)
class LearnerResult(SolverResult):
    """A learning run: per-episode ``regret`` V* - V^{pi_k}, ``cumulative_regret``, ``policy_values``,
    ``planned_values`` (the learner's own, optimistic, estimate), hidden ``contexts``, ``optimal_value`` V* and
    the ``learner`` name. ``history`` holds the same per-episode series plus wall-clock ``seconds``."""

    regret: np.ndarray
    cumulative_regret: np.ndarray
    policy_values: np.ndarray
    planned_values: np.ndarray
    contexts: np.ndarray
    optimal_value: float
    learner: str

    def slope(self, k_from: int, k_to: int) -> float:
        """Log-log slope of the cumulative regret between episodes ``k_from`` and ``k_to`` (:func:`loglog_slope`)."""
        return loglog_slope(self.cumulative_regret, k_from, k_to)


def run_learner(
    lmdp: LatentMDP,
    learner,
    n_episodes: int,
    seed: int | np.random.Generator,
    *,
    callback: Callback | None = None,
    callback_every: int = 1,
    progress: bool = False,
) -> LearnerResult:
    """Run ``learner`` for ``n_episodes`` episodes on ``lmdp`` (module docstring) and score it exactly.

    ``callback(state)`` sees each episode's metrics and the :class:`LearningRun` (``state.solver``); returning
    True stops the run early (then ``converged`` is False). Same seed, same run.
    """
    run = LearningRun(lmdp, learner, n_episodes, seed)
    outcome = iterate(run, max_iter=run.n_episodes, callback=callback, callback_every=callback_every, progress=progress)
    fields = outcome.fields()
    history = outcome.history
    if outcome.converged:
        fields["message"] = f"ran {run.episode} episodes; cumulative regret {run.cumulative_regret:.6g}"
    return LearnerResult(
        regret=history["regret"],
        cumulative_regret=history["cumulative_regret"],
        policy_values=history["policy_value"],
        planned_values=history["planned_value"],
        contexts=history["context"].astype(np.int64),
        optimal_value=run.optimal_value,
        learner=getattr(learner, "name", type(learner).__name__),
        **fields,
    )
