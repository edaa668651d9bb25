"""Exact planning in a latent MDP over histories, with alpha vectors (Zhou, Wang & Du, arXiv 2210.11604).

A history at step h is tau = (s_0, a_0, s_1, ..., s_h). Its alpha vector alpha^pi(tau) in [0, 1]^M holds the
expected reward still to come in each context, alpha^pi_m(tau) = E_m^pi[sum_{t >= h} r_t | tau]; the value is
V^pi = sum_m w_m sum_s nu_m(s) alpha^pi_m(s). Steps:

1. Histories are numbered per step: s_0 is history s_0 at step 0, and history i at step h followed by (a, s')
   is history (i A + a) S + s' at step h + 1, so step h has S (S A)^h histories and the state of history i is
   i mod S. Policies are one action per history (:class:`HistoryPolicy`).
2. Forward, the unnormalised belief beta_m(s_0) = w_m nu_m(s_0), beta_m(tau a s') = beta_m(tau) P_m(s' | s, a):
   the probability of the history and the context together, so beta(tau) / sum_m beta_m(tau) is the posterior.
3. Backward (alpha = 0 after step H - 1):
       Q_m(tau, a) = min{1, r_{m,h}(s, a) + b_m(tau, a) + sum_s' P_m(s' | s, a) alpha_m(tau a s')}
       a*(tau) = argmax_a sum_m beta_m(tau) Q_m(tau, a),    alpha_m(tau) = Q_m(tau, a*(tau)).
   min{1, .} truncates at the total-reward bound (it never binds on a valid model without bonus);
   b_m(tau, a) = hoeffding_m(s, a) + slope_m(s, a) sqrt(Var_{P_m(.|s,a)}[alpha_m(tau a .)]) + offset_m(s, a) is
   the optimism bonus of :mod:`theory.lmdp.learners` (zero for exact planning), never added at the last step,
   where rewards are known. The choice at tau changes only the term sum_m beta_m(tau) alpha_m(tau) of the value,
   so this dynamic programme is exact over all history-dependent policies (deterministic ones suffice).
   Histories the model gives probability zero are planned with the prior w in place of beta (their value does
   not count, but a learner's policy may still reach them on the true model). Ties go to the lowest action.
4. Evaluation of a given policy: the same recursion with a*(tau) fixed and no cap, exact on the true model;
   histories of probability zero in every context are skipped (their alpha vectors are reported as 0).

Cost O(M S (S A)^H); the kernel is a numba loop over the history table. References: the best Markov policy
pi[h, s] by brute force over all A^(H S) deterministic ones (the value is multilinear in the per-(h, s)
decision rules, each used at most once per episode, so a deterministic one is optimal among Markov policies),
and the context oracle V_oracle = sum_m w_m V*_m. V_Markov <= V* <= V_oracle.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numba
import numpy as np

from theory.lmdp.model import LatentMDP
from theory.tabular import backward_induction_batch

MAX_HISTORIES = 4_000_000
"""Largest history table (sum_h S (S A)^h) the planner builds: 16 M bytes of alpha vectors and beliefs per context."""
MAX_MARKOV_POLICIES = 2**22
"""Largest number A^(H S) of deterministic Markov policies :func:`best_markov_policy` enumerates (seconds)."""
TIE_TOLERANCE = 1e-13
"""Actions whose posterior-mean Q is within this of the best count as tied (the lowest index wins)."""


@functools.lru_cache(maxsize=64)
def history_starts(n_states: int, n_actions: int, horizon: int) -> np.ndarray:
    """Offsets of each step's histories in the flat table, shape (H + 1,) read-only: step h holds S (S A)^h."""
    starts = np.cumsum([0] + [n_states * (n_states * n_actions) ** h for h in range(horizon)], dtype=np.int64)
    starts.setflags(write=False)
    return starts


def _checked_table_size(n_states: int, n_actions: int, horizon: int) -> int:
    total = int(sum(n_states * (n_states * n_actions) ** h for h in range(horizon)))
    if total > MAX_HISTORIES:
        raise ValueError(
            f"lmdp: exact planning over histories needs sum_h S (S A)^h = {total} histories for S = {n_states}, "
            f"A = {n_actions}, H = {horizon}; at most {MAX_HISTORIES} are allowed (use a smaller instance)"
        )
    return total


@dataclass(frozen=True, eq=False)
class HistoryPolicy:
    """A deterministic history-dependent policy: ``actions`` (N,) int, one per history in the numbering of the
    module docstring (step 1), N = sum_h S (S A)^h."""

    actions: np.ndarray
    n_states: int
    n_actions: int
    horizon: int
    _starts: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        size = _checked_table_size(self.n_states, self.n_actions, self.horizon)
        actions = np.array(self.actions, copy=True)
        if actions.shape != (size,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions: expected {size} integer actions (one per history), got {actions.shape}")
        if actions.size and (actions.min() < 0 or actions.max() >= self.n_actions):
            low, high = actions.min(), actions.max()
            raise ValueError(f"actions: expected actions in [0, {self.n_actions}), got values in [{low}, {high}]")
        actions = actions.astype(np.int64)
        actions.setflags(write=False)
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "_starts", history_starts(self.n_states, self.n_actions, self.horizon))

    def extend(self, history: int, action: int, next_state: int) -> int:
        """The step-(h+1) number of history ``history`` (a step-h number) followed by (a, s')."""
        return (history * self.n_actions + action) * self.n_states + next_state

    def act(self, step: int, history: int) -> int:
        """The action at history number ``history`` of step ``step``."""
        return int(self.actions[self._starts[step] + history])

    def __call__(self, states, actions) -> int:
        """The action after (s_0, a_0, ..., s_h) given as ``states`` (h + 1 of them) and ``actions`` (h)."""
        if len(states) != len(actions) + 1 or not 1 <= len(states) <= self.horizon:
            raise ValueError(f"states: expected h + 1 states and h actions with h < {self.horizon}")
        history = int(states[0])
        for action, state in zip(actions, states[1:], strict=True):
            history = self.extend(history, int(action), int(state))
        return self.act(len(actions), history)

    @classmethod
    def from_markov(cls, table, n_actions: int) -> HistoryPolicy:
        """The history policy that plays ``table[h, s]`` (H, S) at every step-h history ending in s."""
        table = np.asarray(table)
        if table.ndim != 2 or not np.issubdtype(table.dtype, np.integer):
            raise ValueError(f"table: expected an (H, S) integer array, got {table.dtype} of shape {table.shape}")
        horizon, n_states = table.shape
        starts = history_starts(n_states, n_actions, horizon)
        actions = np.concatenate([np.resize(table[h], starts[h + 1] - starts[h]) for h in range(horizon)])
        return cls(actions, n_states, n_actions, horizon)


@dataclass(frozen=True, kw_only=True)
class TreeSolution:
    """A planned or evaluated policy: ``value`` V^pi, ``policy``, ``alphas`` (N, M) the alpha vector of every
    history (0 at histories of probability zero when evaluated), ``context_values`` (M,) V^pi_m =
    sum_s nu_m(s) alpha_m(s)."""

    value: float
    policy: HistoryPolicy
    alphas: np.ndarray
    context_values: np.ndarray


@numba.njit(cache=True)
def _alpha_tree(
    weights, initial, transitions, rewards, hoeffding, slope, offset, cap, fixed, actions, alphas, beliefs
):  # pragma: no cover - compiled
    """Steps 2-4 of the module docstring on the flat history table; fills ``alphas`` (N, M), ``beliefs`` (N, M)
    and (unless ``fixed``) ``actions`` (N,); returns sum_m w_m sum_s nu_m(s) alpha_m(s)."""
    n_contexts, n_states, n_actions, _ = transitions.shape
    horizon = rewards.shape[1]
    starts = np.zeros(horizon + 1, np.int64)
    size = n_states
    for h in range(horizon):
        starts[h + 1] = starts[h] + size
        size *= n_states * n_actions
    for s in range(n_states):
        for m in range(n_contexts):
            beliefs[s, m] = weights[m] * initial[m, s]
    for h in range(horizon - 1):
        for i in range(starts[h + 1] - starts[h]):
            node, s = starts[h] + i, i % n_states
            for a in range(n_actions):
                child = starts[h + 1] + (i * n_actions + a) * n_states
                for t in range(n_states):
                    for m in range(n_contexts):
                        beliefs[child + t, m] = beliefs[node, m] * transitions[m, s, a, t]
    q = np.empty((n_actions, n_contexts))
    for h in range(horizon - 1, -1, -1):
        for i in range(starts[h + 1] - starts[h]):
            node, s = starts[h] + i, i % n_states
            mass = 0.0
            for m in range(n_contexts):
                mass += beliefs[node, m]
            if fixed and mass == 0:  # evaluation: a history of probability zero contributes nothing
                for m in range(n_contexts):
                    alphas[node, m] = 0.0
                continue
            best, best_score = 0, -np.inf
            for a in range(n_actions):
                if fixed and a != actions[node]:
                    continue
                score = 0.0
                for m in range(n_contexts):
                    value = rewards[m, h, s, a]
                    if h < horizon - 1:
                        child = starts[h + 1] + (i * n_actions + a) * n_states
                        mean, second = 0.0, 0.0
                        for t in range(n_states):
                            p, x = transitions[m, s, a, t], alphas[child + t, m]
                            mean += p * x
                            second += p * x * x
                        variance = max(second - mean * mean, 0.0)
                        value += mean + hoeffding[m, s, a] + slope[m, s, a] * np.sqrt(variance) + offset[m, s, a]
                    q[a, m] = min(value, cap)
                    score += (beliefs[node, m] / mass if mass > 0 else weights[m]) * q[a, m]
                if score > best_score + TIE_TOLERANCE:
                    best, best_score = a, score
            if fixed:
                best = actions[node]
            else:
                actions[node] = best
            for m in range(n_contexts):
                alphas[node, m] = q[best, m]
    total = 0.0
    for s in range(n_states):
        for m in range(n_contexts):
            total += weights[m] * initial[m, s] * alphas[s, m]
    return total


def solve_tree(
    weights, initial, transitions, rewards, *, bonus=None, cap: float = 1.0, actions=None
) -> tuple[float, np.ndarray, np.ndarray]:
    """Run the history-table kernel on raw arrays (no validation; the learners' per-episode path).

    Every array must be writable C-contiguous float64 (one compiled signature; :func:`kernel_arrays` copies an
    LMDP's read-only arrays once). ``rewards`` (M, H, S, A); ``bonus`` None or (hoeffding, slope, offset), each
    (M, S, A); ``actions`` None to plan (argmax), or an (N,) int64 table to evaluate, in which case the alpha
    vectors of histories with probability zero in every context are left at 0. Returns (value, actions, alphas).
    """
    n_contexts, n_states, n_actions, _ = transitions.shape
    size = _checked_table_size(n_states, n_actions, rewards.shape[1])
    if bonus is None:
        zero = np.zeros((n_contexts, n_states, n_actions))
        bonus = (zero, zero, zero)
    fixed = actions is not None
    table = actions if fixed else np.zeros(size, dtype=np.int64)
    alphas = np.empty((size, n_contexts))
    beliefs = np.empty((size, n_contexts))
    value = _alpha_tree(weights, initial, transitions, rewards, *bonus, float(cap), fixed, table, alphas, beliefs)
    return float(value), table, alphas


def _check_lmdp(lmdp) -> LatentMDP:
    if not isinstance(lmdp, LatentMDP):
        raise TypeError(f"lmdp: expected a LatentMDP, got {type(lmdp).__name__}")
    return lmdp


def kernel_arrays(lmdp: LatentMDP) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Writable copies of (w, nu, P, r (M, H, S, A)) for :func:`solve_tree`."""
    return tuple(np.array(array) for array in (lmdp.weights, lmdp.initial, lmdp.transitions, lmdp.step_rewards))


def _solution(lmdp: LatentMDP, value: float, actions: np.ndarray, alphas: np.ndarray) -> TreeSolution:
    context_values = np.sum(lmdp.initial * alphas[: lmdp.n_states].T, axis=1)
    policy = HistoryPolicy(actions, lmdp.n_states, lmdp.n_actions, lmdp.horizon)
    return TreeSolution(value=value, policy=policy, alphas=alphas, context_values=context_values)


def optimal_policy(lmdp: LatentMDP) -> TreeSolution:
    """V* over history-dependent policies and an optimal policy (module docstring, steps 1-3, no bonus)."""
    lmdp = _check_lmdp(lmdp)
    return _solution(lmdp, *solve_tree(*kernel_arrays(lmdp)))


def evaluate_policy(lmdp: LatentMDP, policy) -> TreeSolution:
    """Exact V^pi of a history policy on ``lmdp`` (step 4): a :class:`HistoryPolicy` or its (N,) action table."""
    lmdp = _check_lmdp(lmdp)
    if not isinstance(policy, HistoryPolicy):
        policy = HistoryPolicy(np.asarray(policy), lmdp.n_states, lmdp.n_actions, lmdp.horizon)
    if (policy.n_states, policy.n_actions, policy.horizon) != (lmdp.n_states, lmdp.n_actions, lmdp.horizon):
        raise ValueError(
            f"policy: expected (S, A, H) = {(lmdp.n_states, lmdp.n_actions, lmdp.horizon)}, "
            f"got {(policy.n_states, policy.n_actions, policy.horizon)}"
        )
    value, _, alphas = solve_tree(*kernel_arrays(lmdp), cap=np.inf, actions=np.array(policy.actions))
    return _solution(lmdp, value, np.array(policy.actions), alphas)


@numba.njit(cache=True)
def _markov_search(weights, initial, transitions, rewards, n_policies):  # pragma: no cover - compiled
    """Value of every deterministic Markov policy (code = its actions pi[h, s] as base-A digits, h-major);
    returns the best value and the lowest code reaching it."""
    n_contexts, n_states, n_actions, _ = transitions.shape
    horizon = rewards.shape[1]
    digits = np.zeros(horizon * n_states, np.int64)
    values = np.zeros(n_states)
    previous = np.zeros(n_states)
    best_value, best_code = -np.inf, 0
    for code in range(n_policies):
        rest = code
        for j in range(horizon * n_states):
            digits[j] = rest % n_actions
            rest //= n_actions
        total = 0.0
        for m in range(n_contexts):
            previous[:] = 0.0
            for h in range(horizon - 1, -1, -1):
                for s in range(n_states):
                    a = digits[h * n_states + s]
                    value = rewards[m, h, s, a]
                    for t in range(n_states):
                        value += transitions[m, s, a, t] * previous[t]
                    values[s] = value
                previous[:] = values
            for s in range(n_states):
                total += weights[m] * initial[m, s] * previous[s]
        if total > best_value + TIE_TOLERANCE:
            best_value, best_code = total, code
    return best_value, best_code


@dataclass(frozen=True, kw_only=True)
class MarkovSolution:
    """The best deterministic Markov policy ``policy`` (H, S), its ``value`` V_Markov, and ``n_policies`` searched."""

    value: float
    policy: np.ndarray
    n_policies: int


def best_markov_policy(lmdp: LatentMDP, *, max_policies: int = MAX_MARKOV_POLICIES) -> MarkovSolution:
    """V_Markov = max over pi[h, s] of V^pi, by brute force over all A^(H S) deterministic Markov policies.

    Exact but exponential: raises ValueError when A^(H S) exceeds ``max_policies`` (default 2^22, e.g. A = 2
    with H S <= 22, A = 3 with H S <= 13).
    """
    lmdp = _check_lmdp(lmdp)
    exponent = lmdp.horizon * lmdp.n_states
    n_policies = lmdp.n_actions**exponent
    if n_policies > max_policies:
        raise ValueError(
            f"lmdp: the best Markov policy is found by brute force over A^(H S) = {lmdp.n_actions}^{exponent} "
            f"= {n_policies} policies, above max_policies = {max_policies}; use a smaller instance"
        )
    value, code = _markov_search(*kernel_arrays(lmdp), n_policies)
    digits = [(code // lmdp.n_actions**j) % lmdp.n_actions for j in range(exponent)]
    policy = np.array(digits, dtype=np.int64).reshape(lmdp.horizon, lmdp.n_states)
    return MarkovSolution(value=float(value), policy=policy, n_policies=n_policies)


def context_optimal_values(lmdp: LatentMDP) -> np.ndarray:
    """V*_m = nu_m . V_{m,0}, each context's optimal value when m is known (backward induction), shape (M,)."""
    lmdp = _check_lmdp(lmdp)
    solution = backward_induction_batch(lmdp.transitions, lmdp.step_rewards, lmdp.horizon, initial=lmdp.initial)
    return np.asarray(solution.value)


def oracle_value(lmdp: LatentMDP) -> float:
    """V_oracle = sum_m w_m V*_m: the value of an agent told the context at the start (>= V*)."""
    return float(lmdp.weights @ context_optimal_values(lmdp))


@dataclass(frozen=True, kw_only=True)
class ReferenceValues:
    """V_Markov <= V* <= V_oracle of one LMDP (``markov`` is None when the brute force would be too large)."""

    optimal: float
    markov: float | None
    oracle: float


def reference_values(lmdp: LatentMDP, *, max_policies: int = MAX_MARKOV_POLICIES) -> ReferenceValues:
    """V*, V_Markov (when A^(H S) <= ``max_policies``) and V_oracle of ``lmdp``."""
    lmdp = _check_lmdp(lmdp)
    small = lmdp.n_actions ** (lmdp.horizon * lmdp.n_states) <= max_policies
    markov = best_markov_policy(lmdp, max_policies=max_policies).value if small else None
    return ReferenceValues(optimal=optimal_policy(lmdp).value, markov=markov, oracle=oracle_value(lmdp))
