"""Exact planning and policy evaluation for :class:`~theory.tabular.mdp.TabularMDP` (Puterman 1994, ch. 4 and 6).

1. Backward induction (finite horizon H, discount gamma = 1 unless given):
   V_H = 0,  Q_h(s, a) = r_h(s, a) + gamma sum_s' P_h(s' | s, a) V_{h+1}(s'),  V_h(s) = max_a Q_h(s, a),
   pi_h(s) = argmax_a Q_h(s, a) (ties: the lowest action index); the optimal value is rho . V_0.
   :func:`backward_induction_batch` runs it on B MDPs at once. Two paths: a serial numba kernel (the default)
   and numpy (one batched matmul per step, which can gain from several BLAS threads on large dense MDPs).
2. Exact policy evaluation: the same recursion with max replaced by the policy's average (finite horizon), or
   the linear solve V^pi = (I - gamma P_pi)^{-1} r_pi with P_pi(s, s') = sum_a pi(a|s) P(s'|s, a),
   r_pi(s) = sum_a pi(a|s) r(s, a) (discounted).
3. Value iteration (Bellman 1957), discounted: V_k = T V_{k-1} with (T V)(s) = max_a r(s, a) + gamma P V.
   T is a gamma-contraction, so ||V_k - V*|| <= gamma ||V_{k-1} - V*|| <= gamma (||V_{k-1} - V_k|| + ||V_k - V*||)
   and hence ||V_k - V*||_inf <= gamma / (1 - gamma) ||V_k - V_{k-1}||_inf: VI stops when this bound is <= tol.
   (pymdptoolbox stops on the span of V_k - V_{k-1}, which bounds the policy's suboptimality, not ||V_k - V*||.)
4. Policy iteration (Howard 1960), discounted: evaluate pi_k exactly (step 2), improve
   pi_{k+1}(s) = argmax_a Q^{pi_k}(s, a), keeping pi_k(s) unless another action is better by more than a
   rounding margin (so ties cannot cycle); stops when the policy no longer changes, then V^{pi_k} = V*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from theory.solver import Callback, SolverResult, iterate
from theory.tabular.mdp import (
    TabularMDP,
    as_float_array,
    check_probability_rows,
    validate_discount,
    validate_horizon,
)

METHODS = ("auto", "numba", "numpy")
"""``"auto"`` is numba: with one BLAS thread it beat numpy's matmul path from S = 10 to S = 1500 (benchmarks)."""


@dataclass(frozen=True, kw_only=True)
class FiniteHorizonSolution:
    """Backward induction's output: ``q`` (H, S, A), ``values`` (H+1, S) with values[H] = 0, greedy ``policy``
    (H, S) int, and ``value`` = rho . values[0].

    From :func:`backward_induction_batch` every array has a leading batch axis B and ``value`` is (B,), or None
    when no start distribution was given.
    """

    q: np.ndarray
    values: np.ndarray
    policy: np.ndarray
    value: float | np.ndarray | None


@dataclass(frozen=True, kw_only=True)
class PolicyEvaluation:
    """Exact value of a policy: ``values`` (H+1, S) finite horizon or (S,) discounted, ``q`` (H, S, A) or (S, A),
    and ``value`` = rho . values[0] (finite horizon) or rho . values (discounted)."""

    values: np.ndarray
    q: np.ndarray
    value: float


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    return method


# Reassociation lets LLVM vectorise the dot products (1.5x here); it changes sums only in the last bits and, unlike
# full fastmath, keeps the -inf start of the running maximum meaningful.
@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _backward_induction_numba(transitions, rewards, discount, q, values, policy):  # pragma: no cover - compiled
    """Fill q (B, H, S, A), values (B, H+1, S) and policy (B, H, S) in place; transitions (B, 1 or H, S, A, S),
    rewards (B, 1 or H, S, A) (a leading step length of 1 means stationary); values[:, H] must be zero."""
    n_batch, horizon, n_states, n_actions = q.shape
    for b in range(n_batch):
        for h in range(horizon - 1, -1, -1):
            ht = h if transitions.shape[1] > 1 else 0
            hr = h if rewards.shape[1] > 1 else 0
            for s in range(n_states):
                best = -np.inf
                best_action = 0
                for a in range(n_actions):
                    expected_next = 0.0
                    for s_next in range(n_states):
                        expected_next += transitions[b, ht, s, a, s_next] * values[b, h + 1, s_next]
                    q_value = rewards[b, hr, s, a] + discount * expected_next
                    q[b, h, s, a] = q_value
                    if q_value > best:
                        best = q_value
                        best_action = a
                values[b, h, s] = best
                policy[b, h, s] = best_action


def _backward_induction_numpy(transitions, rewards, discount, q, values, policy) -> None:
    """The same recursion as :func:`_backward_induction_numba`, one batched matmul P_h V_{h+1} per step."""
    n_batch, horizon, n_states, n_actions = q.shape
    for h in range(horizon - 1, -1, -1):
        kernel = transitions[:, h if transitions.shape[1] > 1 else 0].reshape(n_batch, n_states * n_actions, n_states)
        expected_next = np.matmul(kernel, values[:, h + 1, :, None]).reshape(n_batch, n_states, n_actions)
        q[:, h] = rewards[:, h if rewards.shape[1] > 1 else 0] + discount * expected_next
        policy[:, h] = np.argmax(q[:, h], axis=-1)
        values[:, h] = np.max(q[:, h], axis=-1)


def _backward_induction_arrays(transitions, rewards, horizon, discount, method):
    """Run backward induction on (B, 1 or H, S, A, S) transitions and (B, 1 or H, S, A) rewards."""
    n_batch, _, n_states, n_actions, _ = transitions.shape
    q = np.empty((n_batch, horizon, n_states, n_actions))
    values = np.zeros((n_batch, horizon + 1, n_states))
    policy = np.empty((n_batch, horizon, n_states), dtype=np.int64)
    kernel = _backward_induction_numpy if method == "numpy" else _backward_induction_numba
    kernel(transitions, rewards, 1.0 if discount is None else discount, q, values, policy)
    return q, values, policy


def _stepwise(array: np.ndarray, stationary_ndim: int) -> np.ndarray:
    """Insert a step axis of length 1 after the batch axis when ``array`` is stationary."""
    return array[:, None] if array.ndim == stationary_ndim else array


def backward_induction(mdp: TabularMDP, *, method: str = "auto") -> FiniteHorizonSolution:
    """Optimal Q, V and greedy policy of a finite-horizon MDP by backward induction (module docstring, step 1)."""
    if not mdp.is_finite_horizon:
        raise ValueError("mdp: backward induction needs a finite-horizon MDP (horizon given); use value_iteration")
    _check_method(method)
    q, values, policy = _backward_induction_arrays(
        _stepwise(mdp.transitions[None], 4), _stepwise(mdp.rewards[None], 3), mdp.horizon, mdp.discount, method
    )
    return FiniteHorizonSolution(q=q[0], values=values[0], policy=policy[0], value=float(mdp.initial @ values[0, 0]))


def backward_induction_batch(
    transitions,
    rewards,
    horizon: int,
    *,
    discount: float | None = None,
    initial=None,
    method: str = "auto",
) -> FiniteHorizonSolution:
    """Backward induction on B MDPs of one shape at once (module docstring, step 1).

    ``transitions`` (B, S, A, S) or time-dependent (B, H, S, A, S), ``rewards`` (B, S, A) or (B, H, S, A),
    optional ``initial`` (B, S) or (S,) start distributions for ``value``. The batch is a separate function
    rather than a batch axis on :class:`TabularMDP`, so the model stays one MDP; it validates like the model.
    """
    _check_method(method)
    horizon = validate_horizon(horizon)
    if horizon is None:
        raise TypeError("horizon: expected an int >= 1, got None")
    discount = validate_discount(discount)
    transitions = as_float_array(transitions, "transitions", copy=False)
    rewards = as_float_array(rewards, "rewards", copy=False)
    if transitions.ndim not in (4, 5) or transitions.shape[-1] != transitions.shape[-3]:
        raise ValueError(f"transitions: expected shape (B, S, A, S) or (B, H, S, A, S), got {transitions.shape}")
    n_batch = transitions.shape[0]
    n_states, n_actions = transitions.shape[-3:-1]
    if rewards.ndim not in (3, 4) or rewards.shape[0] != n_batch or rewards.shape[-2:] != (n_states, n_actions):
        raise ValueError(
            f"rewards: expected shape (B, S, A) or (B, H, S, A) with (B, S, A) = ({n_batch}, {n_states}, "
            f"{n_actions}) from transitions, got {rewards.shape}"
        )
    for name, array, stationary_ndim in (("transitions", transitions, 4), ("rewards", rewards, 3)):
        if array.ndim > stationary_ndim and array.shape[1] != horizon:
            raise ValueError(
                f"horizon: expected {array.shape[1]}, the step length of time-dependent {name} {array.shape}, "
                f"got {horizon}"
            )
    check_probability_rows(transitions, "transitions")
    q, values, policy = _backward_induction_arrays(
        _stepwise(transitions, 4), _stepwise(rewards, 3), horizon, discount, method
    )
    value = None
    if initial is not None:
        initial = as_float_array(initial, "initial", copy=False)
        if initial.shape not in ((n_states,), (n_batch, n_states)):
            raise ValueError(f"initial: expected shape ({n_states},) or ({n_batch}, {n_states}), got {initial.shape}")
        check_probability_rows(initial, "initial")
        value = np.sum(initial * values[:, 0], axis=-1)
    return FiniteHorizonSolution(q=q, values=values, policy=policy, value=value)


def policy_probabilities(policy, n_actions: int, shape: tuple[int, ...], name: str = "policy") -> np.ndarray:
    """A policy as action probabilities of shape ``shape + (n_actions,)``.

    ``policy`` is deterministic (integer array of shape ``shape``, actions in [0, A)) or stochastic (float array
    of shape ``shape + (A,)`` whose rows lie on the simplex); the deterministic one becomes one-hot rows.
    """
    policy = np.asarray(policy)
    if policy.shape == shape:
        if not np.issubdtype(policy.dtype, np.integer):
            raise TypeError(
                f"{name}: a deterministic policy of shape {shape} needs integer actions, got {policy.dtype}"
            )
        if policy.size and (policy.min() < 0 or policy.max() >= n_actions):
            raise ValueError(
                f"{name}: expected actions in [0, {n_actions}), got values in [{policy.min()}, {policy.max()}]"
            )
        return np.eye(n_actions)[policy]
    if policy.shape == (*shape, n_actions):
        probabilities = as_float_array(policy, name, copy=False)
        check_probability_rows(probabilities, name)
        return probabilities
    raise ValueError(
        f"{name}: expected shape {shape} (deterministic) or {(*shape, n_actions)} (stochastic), got {policy.shape}"
    )


def _bellman_backup(mdp: TabularMDP, values: np.ndarray) -> np.ndarray:
    """Q(s, a) = r(s, a) + gamma sum_s' P(s' | s, a) V(s') for a discounted MDP."""
    return mdp.rewards + mdp.discount * (mdp.transitions @ values)


def _require_discounted(mdp: TabularMDP, what: str) -> None:
    if mdp.is_finite_horizon:
        raise ValueError(f"mdp: {what} needs a discounted infinite-horizon MDP (discount given, horizon None)")


def _discounted_policy_values(mdp: TabularMDP, probabilities: np.ndarray) -> np.ndarray:
    """V^pi = (I - gamma P_pi)^{-1} r_pi by one dense linear solve."""
    transitions_pi = np.einsum("sa,sat->st", probabilities, mdp.transitions)
    rewards_pi = np.sum(probabilities * mdp.rewards, axis=-1)
    return np.linalg.solve(np.eye(mdp.n_states) - mdp.discount * transitions_pi, rewards_pi)


def evaluate_policy(mdp: TabularMDP, policy) -> PolicyEvaluation:
    """Exact value of ``policy`` (module docstring, step 2).

    Finite horizon: ``policy`` (H, S) int or (H, S, A) probabilities, backward recursion
    Q_h = r_h + gamma P_h V_{h+1}, V_h(s) = sum_a pi_h(a|s) Q_h(s, a). Discounted: (S,) int or (S, A)
    probabilities, V = (I - gamma P_pi)^{-1} r_pi.
    """
    if mdp.is_finite_horizon:
        horizon = mdp.horizon
        probabilities = policy_probabilities(policy, mdp.n_actions, (horizon, mdp.n_states))
        discount = 1.0 if mdp.discount is None else mdp.discount
        values = np.zeros((horizon + 1, mdp.n_states))
        q = np.empty((horizon, mdp.n_states, mdp.n_actions))
        for h in range(horizon - 1, -1, -1):
            q[h] = mdp.rewards_at(h) + discount * (mdp.transitions_at(h) @ values[h + 1])
            values[h] = np.sum(probabilities[h] * q[h], axis=-1)
        return PolicyEvaluation(values=values, q=q, value=float(mdp.initial @ values[0]))
    probabilities = policy_probabilities(policy, mdp.n_actions, (mdp.n_states,))
    values = _discounted_policy_values(mdp, probabilities)
    return PolicyEvaluation(values=values, q=_bellman_backup(mdp, values), value=float(mdp.initial @ values))


class ValueIteration:
    """Discounted value iteration V_k = T V_{k-1}, stopped by the bound gamma/(1-gamma) ||V_k - V_{k-1}||_inf.

    ``step()`` returns ``bellman_residual`` = ||V_k - V_{k-1}||_inf and ``error_bound`` >= ||V_k - V*||_inf.
    """

    def __init__(self, mdp: TabularMDP, *, tol: float = 1e-10, initial_values=None) -> None:
        _require_discounted(mdp, "value iteration")
        if not tol > 0:
            raise ValueError(f"tol: expected a positive tolerance, got {tol}")
        self.mdp = mdp
        self.tol = float(tol)
        if initial_values is None:
            self._values = np.zeros(mdp.n_states)
        else:
            self._values = as_float_array(initial_values, "initial_values")
            if self._values.shape != (mdp.n_states,):
                raise ValueError(f"initial_values: expected shape ({mdp.n_states},), got {self._values.shape}")
        self.error_bound = np.inf

    def step(self) -> dict[str, float]:
        new_values = _bellman_backup(self.mdp, self._values).max(axis=-1)
        residual = float(np.max(np.abs(new_values - self._values)))
        self._values = new_values
        gamma = self.mdp.discount
        self.error_bound = gamma / (1.0 - gamma) * residual
        return {"bellman_residual": residual, "error_bound": self.error_bound}

    @property
    def converged(self) -> bool:
        return self.error_bound <= self.tol

    @property
    def values(self) -> np.ndarray:
        return self._values.copy()

    @property
    def q(self) -> np.ndarray:
        """The Bellman backup of the current values, r + gamma P V_k."""
        return _bellman_backup(self.mdp, self._values)

    @property
    def policy(self) -> np.ndarray:
        """Greedy with respect to the current values (ties: the lowest action)."""
        return np.argmax(self.q, axis=-1)


@dataclass(frozen=True, kw_only=True)
class ValueIterationResult(SolverResult):
    """``values`` V_k (S,), ``q`` = r + gamma P V_k (S, A), greedy ``policy`` (S,), ``error_bound`` >= ||V_k - V*||."""

    values: np.ndarray
    q: np.ndarray
    policy: np.ndarray
    error_bound: float


def value_iteration(
    mdp: TabularMDP,
    *,
    tol: float = 1e-10,
    max_iter: int = 100_000,
    initial_values=None,
    callback: Callback | None = None,
    callback_every: int = 1,
    progress: bool = False,
) -> ValueIterationResult:
    """Run :class:`ValueIteration` until ||V_k - V*||_inf <= gamma/(1-gamma) ||V_k - V_{k-1}||_inf <= ``tol``."""
    solver = ValueIteration(mdp, tol=tol, initial_values=initial_values)
    outcome = iterate(solver, max_iter=max_iter, callback=callback, callback_every=callback_every, progress=progress)
    return ValueIterationResult(
        values=solver.values,
        q=solver.q,
        policy=solver.policy,
        error_bound=solver.error_bound,
        **outcome.fields(),
    )


class PolicyIteration:
    """Howard's policy iteration: exact evaluation by a linear solve, then greedy improvement.

    ``step()`` evaluates the current policy pi_k, improves it, and returns ``policy_changes`` (states whose
    action changed) and ``value_increase`` = max_s V^{pi_k}(s) - V^{pi_{k-1}}(s) (NaN on the first step).
    ``initial_policy``: (S,) actions or (S, A) probabilities (their most likely action); default greedy in r.
    """

    def __init__(self, mdp: TabularMDP, *, initial_policy=None) -> None:
        _require_discounted(mdp, "policy iteration")
        self.mdp = mdp
        if initial_policy is None:
            self._policy = np.argmax(mdp.rewards, axis=-1)
        else:
            probabilities = policy_probabilities(initial_policy, mdp.n_actions, (mdp.n_states,), "initial_policy")
            self._policy = np.argmax(probabilities, axis=-1)
        self._values: np.ndarray | None = None
        self._q: np.ndarray | None = None
        self._changes = -1

    def step(self) -> dict[str, float]:
        values = _discounted_policy_values(self.mdp, np.eye(self.mdp.n_actions)[self._policy])
        increase = np.nan if self._values is None else float(np.max(values - self._values))
        q = _bellman_backup(self.mdp, values)
        # Switch only on a clear improvement: actions tied up to rounding keep the current one, so PI cannot cycle.
        margin = 1e-12 * (1.0 + np.max(np.abs(q)))
        current = np.take_along_axis(q, self._policy[:, None], axis=-1)[:, 0]
        improved = np.where(q.max(axis=-1) > current + margin, np.argmax(q, axis=-1), self._policy)
        self._changes = int(np.count_nonzero(improved != self._policy))
        self._values, self._q, self._policy = values, q, improved
        return {"policy_changes": float(self._changes), "value_increase": increase}

    @property
    def converged(self) -> bool:
        return self._changes == 0

    @property
    def values(self) -> np.ndarray | None:
        """V^{pi_k} of the policy evaluated in the last step (None before the first)."""
        return None if self._values is None else self._values.copy()

    @property
    def q(self) -> np.ndarray | None:
        return None if self._q is None else self._q.copy()

    @property
    def policy(self) -> np.ndarray:
        """The improved policy pi_{k+1} (equal to pi_k once converged)."""
        return self._policy.copy()


@dataclass(frozen=True, kw_only=True)
class PolicyIterationResult(SolverResult):
    """``values`` V^pi (S,) and ``q`` Q^pi (S, A) of the last evaluated policy pi_k, ``policy`` (S,) its greedy
    improvement pi_{k+1}; once converged pi_{k+1} = pi_k = pi* and values = V*."""

    values: np.ndarray
    q: np.ndarray
    policy: np.ndarray


def policy_iteration(
    mdp: TabularMDP,
    *,
    max_iter: int = 1_000,
    initial_policy=None,
    callback: Callback | None = None,
    callback_every: int = 1,
    progress: bool = False,
) -> PolicyIterationResult:
    """Run :class:`PolicyIteration` until the greedy policy no longer changes."""
    solver = PolicyIteration(mdp, initial_policy=initial_policy)
    outcome = iterate(solver, max_iter=max_iter, callback=callback, callback_every=callback_every, progress=progress)
    return PolicyIterationResult(values=solver.values, q=solver.q, policy=solver.policy, **outcome.fields())
