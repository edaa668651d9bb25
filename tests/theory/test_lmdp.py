"""Latent MDPs: exact planning against backward induction and brute force, closed forms, learners' regret rates."""

import itertools

import numpy as np
import pytest

from theory.lmdp import (
    HistoryPolicy,
    LatentMDP,
    ModelBasedLearner,
    PosteriorSampling,
    best_markov_policy,
    deep_sea_lmdp,
    evaluate_policy,
    kernel_arrays,
    loglog_slope,
    optimal_policy,
    oracle_value,
    random_lmdp,
    reference_values,
    revealing_lmdp,
    run_learner,
    solve_tree,
)
from theory.tabular import backward_induction


def enumerated_value(lmdp, choose):
    """sum_m w_m sum_s0 nu_m(s0) E_m[sum_h r_h] by recursion over every state sequence; ``choose(states,
    actions)`` gives the action after a history. Written independently of theory.lmdp.planning."""

    def to_go(m, states, actions):
        h, s = len(actions), states[-1]
        if h == lmdp.horizon:
            return 0.0
        a = choose(tuple(states), tuple(actions))
        value = lmdp.step_rewards[m, h, s, a]
        for t in range(lmdp.n_states):
            if lmdp.transitions[m, s, a, t] > 0:
                value += lmdp.transitions[m, s, a, t] * to_go(m, [*states, t], [*actions, a])
        return value

    return sum(
        lmdp.weights[m] * lmdp.initial[m, s] * to_go(m, [s], [])
        for m in range(lmdp.n_contexts)
        for s in range(lmdp.n_states)
        if lmdp.initial[m, s] > 0
    )


def one_context(seed, per_step):
    """A random M = 1 LMDP, with stationary or per-step rewards."""
    rng = np.random.default_rng(seed)
    n_states, n_actions, horizon = 3, 3, 4
    transitions = rng.dirichlet(np.full(n_states, 0.5), size=(1, n_states, n_actions))
    shape = (1, horizon, n_states, n_actions) if per_step else (1, n_states, n_actions)
    rewards = rng.random(shape) / horizon
    return LatentMDP([1.0], transitions, rewards, rng.dirichlet(np.ones(n_states))[None], horizon)


# ------------------------------------------------------------------------------------------------ planning


@pytest.mark.parametrize("per_step", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_context_reduces_to_backward_induction(seed, per_step):
    lmdp = one_context(seed, per_step)
    reference = backward_induction(lmdp.context_mdp(0))
    solution = optimal_policy(lmdp)
    assert solution.value == pytest.approx(reference.value, abs=1e-12)
    # The alpha vector of each one-state history is V_0(s_0), for every start state.
    np.testing.assert_allclose(solution.alphas[: lmdp.n_states, 0], reference.values[0], rtol=0, atol=1e-12)
    markov = best_markov_policy(lmdp)
    assert markov.value == pytest.approx(reference.value, abs=1e-12)
    assert oracle_value(lmdp) == pytest.approx(reference.value, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_markov_optimal_and_oracle_values_are_ordered(seed):
    lmdp = random_lmdp(2, 3, 2, 4, concentration=0.3, deterministic=seed % 2 == 1, seed=seed)
    values = reference_values(lmdp)
    assert values.markov <= values.optimal + 1e-12
    assert values.optimal <= values.oracle + 1e-12
    # Three code paths agree: the Markov search's own value, its policy replayed as a history policy, and the
    # optimal history policy re-evaluated.
    markov = best_markov_policy(lmdp)
    replayed = evaluate_policy(lmdp, HistoryPolicy.from_markov(markov.policy, lmdp.n_actions))
    assert replayed.value == pytest.approx(markov.value, abs=1e-12)
    solution = optimal_policy(lmdp)
    assert evaluate_policy(lmdp, solution.policy).value == pytest.approx(solution.value, abs=1e-12)
    assert np.all(solution.alphas >= 0) and np.all(solution.alphas <= 1 + 1e-12)


@pytest.mark.parametrize(("p", "weights"), [(0.8, (0.5, 0.5)), (1.0, (0.5, 0.5)), (0.9, (0.3, 0.7))])
def test_revealing_instance_matches_its_closed_forms(p, weights):
    w0, w1 = weights
    lmdp = revealing_lmdp(p, weights)
    values = reference_values(lmdp)
    expected_optimal = max(w0 * p, w1 * (1 - p)) + max(w0 * (1 - p), w1 * p)
    assert values.optimal == pytest.approx(expected_optimal, abs=1e-12)
    assert values.markov == pytest.approx(max(weights), abs=1e-12)
    assert values.oracle == pytest.approx(1.0, abs=1e-12)
    assert values.optimal > values.markov + 0.09  # history matters: 0.8 vs 0.5, 1 vs 0.5, 0.9 vs 0.7
    # The optimal policy probes at step 0 and answers the likelier context at step 2.
    policy = optimal_policy(lmdp).policy
    assert policy([0], []) == 0
    likelier_given_signal_1 = 0 if w0 * p >= w1 * (1 - p) else 1
    assert policy([0, 1, 0], [0, 0]) == likelier_given_signal_1


def test_deep_sea_values_are_in_closed_form():
    depth, epsilon = 4, 0.1 / 4
    values = reference_values(deep_sea_lmdp(depth))
    # Guess at column 1: right in one context (then 1), back to column 0 in the other (then eps at steps 1-3).
    assert values.optimal == pytest.approx(0.5 + 1.5 * epsilon, abs=1e-12)
    assert values.markov == pytest.approx(values.optimal, abs=1e-12)
    assert values.oracle == pytest.approx(1.0, abs=1e-12)


def all_history_policies_at_horizon_two(n_states, n_actions):
    """Every deterministic history-dependent policy for H = 2: a_0(s_0), then a_1(s_0, s_1) (a_0 is implied)."""
    for first in itertools.product(range(n_actions), repeat=n_states):
        for second in itertools.product(range(n_actions), repeat=n_states * n_states):
            yield (
                lambda states, actions, first=first, second=second: (
                    first[states[0]] if len(states) == 1 else second[states[0] * n_states + states[1]]
                )
            )


@pytest.mark.parametrize(
    ("n_contexts", "n_states", "n_actions", "seed"), [(3, 2, 2, 0), (2, 3, 2, 1), (2, 2, 3, 2), (2, 3, 2, 3)]
)
def test_planner_equals_brute_force_over_all_history_policies_at_horizon_two(n_contexts, n_states, n_actions, seed):
    lmdp = random_lmdp(n_contexts, n_states, n_actions, 2, concentration=0.5, seed=seed)
    policies = all_history_policies_at_horizon_two(n_states, n_actions)
    brute_force = max(enumerated_value(lmdp, choose) for choose in policies)
    assert optimal_policy(lmdp).value == pytest.approx(brute_force, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_evaluation_of_random_history_policies_matches_enumeration(seed):
    lmdp = random_lmdp(2, 3, 2, 3, concentration=0.5, seed=seed)
    table = np.random.default_rng(seed).integers(2, size=optimal_policy(lmdp).policy.actions.size)
    policy = HistoryPolicy(table, 3, 2, 3)
    expected = enumerated_value(lmdp, lambda states, actions: policy(states, actions))
    assert evaluate_policy(lmdp, policy).value == pytest.approx(expected, abs=1e-12)


def test_history_policy_numbering():
    policy = HistoryPolicy(np.arange(3 + 18) % 2, n_states=3, n_actions=2, horizon=2)
    # History (s_0 = 2, a_0 = 1, s_1 = 0) is number (2 * 2 + 1) * 3 + 0 = 15 of step 1, entry 3 + 15 = 18.
    assert policy([2, 0], [1]) == 18 % 2 and policy.extend(2, 1, 0) == 15
    markov = HistoryPolicy.from_markov(np.array([[0, 1, 1], [1, 0, 1]]), n_actions=2)
    assert [markov([s], []) for s in range(3)] == [0, 1, 1]
    histories = itertools.product(range(3), range(2), range(3))
    assert all(markov([s0, s1], [a0]) == [1, 0, 1][s1] for s0, a0, s1 in histories)


def test_invalid_models_and_oversized_problems_are_rejected():
    lmdp = random_lmdp(seed=0)
    with pytest.raises(ValueError, match="^rewards: the total reward"):
        LatentMDP(lmdp.weights, lmdp.transitions, lmdp.rewards * lmdp.horizon * 0.9, lmdp.initial, lmdp.horizon)
    with pytest.raises(ValueError, match="^weights"):
        LatentMDP([0.5, 0.6], lmdp.transitions, lmdp.rewards, lmdp.initial, lmdp.horizon)
    with pytest.raises(ValueError, match="^weights: expected every mixing weight > 0"):
        LatentMDP([1.0, 0.0], lmdp.transitions, lmdp.rewards, lmdp.initial, lmdp.horizon)
    with pytest.raises(ValueError, match="^rewards: expected shape"):
        LatentMDP(lmdp.weights, lmdp.transitions, lmdp.rewards[:, :2], lmdp.initial, lmdp.horizon)
    with pytest.raises(ValueError, match="^transitions"):
        LatentMDP(lmdp.weights, lmdp.transitions * 2, lmdp.rewards, lmdp.initial, lmdp.horizon)
    with pytest.raises(ValueError, match="^lmdp: the best Markov policy"):
        best_markov_policy(random_lmdp(2, 6, 2, 4, seed=0))
    with pytest.raises(ValueError, match="^lmdp: exact planning over histories"):
        optimal_policy(random_lmdp(2, 6, 4, 6, seed=0))
    with pytest.raises(ValueError, match="^bonus"):
        ModelBasedLearner("ucb")


# ------------------------------------------------------------------------------------------------ learning


def test_loglog_slope_of_power_laws():
    k = np.arange(1, 5001)
    assert loglog_slope(3 * np.sqrt(k), 1000, 4000) == pytest.approx(0.5, abs=1e-12)
    assert loglog_slope(0.25 * k, 1000, 4000) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="^k_from"):
        loglog_slope(k, 4000, 1000)


def test_optimism_saturates_at_the_total_reward_bound_before_any_data():
    lmdp = random_lmdp(seed=0)
    for bonus in ("bernstein", "hoeffding"):
        result = run_learner(lmdp, ModelBasedLearner(bonus), 1, seed=0)
        assert result.planned_values[0] == pytest.approx(1.0, abs=1e-12)  # Q = min{1, r + 1 + ...} when untried


def test_no_bonus_is_added_at_the_last_step():
    # H = 1: every step is the last, rewards are known, so even a huge bonus leaves the plan exact.
    lmdp = random_lmdp(2, 3, 2, 1, seed=3)
    arrays = kernel_arrays(lmdp)
    huge = np.full((2, 3, 2), 5.0)
    optimistic, _, _ = solve_tree(*arrays, bonus=(huge, huge, huge))
    assert optimistic == pytest.approx(optimal_policy(lmdp).value, abs=1e-12)
    # With H = 2 the same bonus does count at the first step and saturates every alpha vector at 1.
    lmdp = random_lmdp(2, 3, 2, 2, seed=3)
    assert solve_tree(*kernel_arrays(lmdp), bonus=(huge, huge, huge))[0] == pytest.approx(1.0, abs=1e-12)


def test_runs_are_reproducible_and_a_callback_stops_them():
    lmdp = random_lmdp(seed=1)
    first = run_learner(lmdp, PosteriorSampling(), 100, seed=7)
    second = run_learner(lmdp, PosteriorSampling(), 100, seed=7)
    np.testing.assert_array_equal(first.regret, second.regret)
    np.testing.assert_array_equal(first.contexts, second.contexts)
    assert first.converged and first.n_iter == 100
    np.testing.assert_allclose(first.cumulative_regret, np.cumsum(first.regret), rtol=0, atol=1e-9)
    stopped = run_learner(lmdp, PosteriorSampling(), 100, seed=7, callback=lambda state: state.n_iter == 30)
    assert not stopped.converged and stopped.n_iter == 30
    np.testing.assert_array_equal(stopped.regret, first.regret[:30])


def test_bernstein_regret_is_sublinear_on_a_random_lmdp():
    # M = 2, S = 3, A = 2, H = 4, Dirichlet(0.3): measured R(1000) = 116.4, R(4000) = 152.3, slope 0.19.
    result = run_learner(random_lmdp(2, 3, 2, 4, concentration=0.3, seed=0), ModelBasedLearner("bernstein"), 4000, 0)
    assert result.slope(1000, 4000) <= 0.5
    assert result.regret[-500:].mean() < 0.01
    assert np.all(result.regret >= -1e-12)


def test_bernstein_beats_hoeffding_on_a_deterministic_lmdp():
    # Deterministic transitions: the next alpha vector has zero variance, so the Bernstein bonus is iota / n.
    lmdp = random_lmdp(2, 3, 2, 4, deterministic=True, seed=1)
    bernstein = run_learner(lmdp, ModelBasedLearner("bernstein"), 4000, 0)
    hoeffding = run_learner(lmdp, ModelBasedLearner("hoeffding"), 4000, 0)
    assert bernstein.slope(1000, 4000) <= 0.5
    assert bernstein.cumulative_regret[-1] <= 0.6 * hoeffding.cumulative_regret[-1]  # measured 198.9 vs 638.9


def test_certainty_equivalence_is_linear_on_deep_sea_while_optimism_is_not():
    lmdp = deep_sea_lmdp(4)
    stuck_value = 4 * 0.1 / 4  # the distractor at column 0, every step
    greedy = run_learner(lmdp, ModelBasedLearner("none"), 4000, 0)
    np.testing.assert_allclose(greedy.regret, greedy.optimal_value - stuck_value, rtol=0, atol=1e-12)
    assert greedy.slope(1000, 4000) >= 0.9
    for learner in (ModelBasedLearner("bernstein"), PosteriorSampling()):
        result = run_learner(lmdp, learner, 4000, 0)
        assert result.slope(1000, 4000) <= 0.5
        assert result.cumulative_regret[-1] < 0.1 * greedy.cumulative_regret[-1]
