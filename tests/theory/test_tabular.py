"""theory.tabular against hand-computed values, brute force over policies, the exact linear solve and Monte Carlo."""

import itertools

import numpy as np
import pytest

from theory.tabular import (
    PolicyIteration,
    TabularMDP,
    ValueIteration,
    backward_induction,
    backward_induction_batch,
    evaluate_policy,
    policy_iteration,
    rollouts,
    value_iteration,
)
from theory.tabular.rollouts import _guide_table, _inverse_cdf, cumulative_rows


def random_mdp(seed, n_states=6, n_actions=3, horizon=None, discount=None, time_dependent=False, sparse=False):
    """Dirichlet transitions (a third of the entries zeroed when ``sparse``), uniform rewards, Dirichlet start."""
    rng = np.random.default_rng(seed)
    steps = (horizon,) if time_dependent else ()
    transitions = rng.dirichlet(np.ones(n_states), size=(*steps, n_states, n_actions))
    if sparse:
        transitions *= rng.random(transitions.shape) > 1 / 3
        transitions[..., 0] += transitions.sum(axis=-1) == 0  # keep every row a distribution
        transitions /= transitions.sum(axis=-1, keepdims=True)
    rewards = rng.random((*steps, n_states, n_actions))
    return TabularMDP(transitions, rewards, rng.dirichlet(np.ones(n_states)), horizon=horizon, discount=discount)


def forward_value(mdp, policy, initial):
    """sum_h gamma^h d_h . r_h(., pi_h) with the state distribution pushed forward, d_{h+1} = d_h P_h(pi_h)."""
    states = np.arange(mdp.n_states)
    distribution, total = np.asarray(initial, dtype=float), 0.0
    gamma = 1.0 if mdp.discount is None else mdp.discount
    for h in range(mdp.horizon):
        total += gamma**h * distribution @ mdp.rewards_at(h)[states, policy[h]]
        distribution = distribution @ mdp.transitions_at(h)[states, policy[h]]
    return total


# ------------------------------------------------------------------------------------------- backward induction


def test_backward_induction_on_a_hand_solved_two_state_chain():
    # Action 0 stays, action 1 switches; reward 1 per step spent in state 1. From state 0 with H = 3 the best is
    # to switch at once and stay: rewards 0, 1, 1. In state 1 at the last step both actions earn 1: the tie goes to 0.
    stay, switch = np.eye(2), np.eye(2)[::-1]
    transitions = np.stack([stay, switch], axis=1)  # (s, a, s')
    rewards = np.array([[0.0, 0.0], [1.0, 1.0]])
    solution = backward_induction(TabularMDP(transitions, rewards, [1.0, 0.0], horizon=3))
    np.testing.assert_array_equal(solution.values, [[2.0, 3.0], [1.0, 2.0], [0.0, 1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(solution.q[0], [[1.0, 2.0], [3.0, 2.0]])
    np.testing.assert_array_equal(solution.q[2], [[0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_array_equal(solution.policy, [[1, 0], [1, 0], [0, 0]])
    assert solution.value == 2.0


@pytest.mark.parametrize(
    "options",
    [
        {"horizon": 7},
        {"horizon": 7, "time_dependent": True},
        {"horizon": 7, "discount": 0.8},
        {"horizon": 7, "time_dependent": True, "discount": 0.8, "sparse": True},
    ],
)
@pytest.mark.parametrize("method", ["numba", "numpy"])
def test_backward_induction_values_are_the_exact_values_of_its_greedy_policy(options, method):
    mdp = random_mdp(1, **options)
    solution = backward_induction(mdp, method=method)
    evaluation = evaluate_policy(mdp, solution.policy)
    np.testing.assert_allclose(evaluation.values, solution.values, rtol=0, atol=1e-10)
    np.testing.assert_allclose(evaluation.q, solution.q, rtol=0, atol=1e-10)
    assert evaluation.value == pytest.approx(solution.value, abs=1e-10)
    np.testing.assert_array_equal(solution.values[-1], 0.0)
    np.testing.assert_array_equal(solution.policy, np.argmax(solution.q, axis=-1))


@pytest.mark.parametrize("time_dependent", [False, True])
def test_backward_induction_equals_brute_force_over_all_deterministic_markov_policies(time_dependent):
    mdp = random_mdp(2, n_states=2, n_actions=2, horizon=3, time_dependent=time_dependent)
    solution = backward_induction(mdp)
    # All 2^(H S) = 64 policies, each valued by pushing the state distribution forward (no backward recursion).
    policies = [np.reshape(actions, (3, 2)) for actions in itertools.product(range(2), repeat=6)]
    for start in range(2):
        best = max(forward_value(mdp, policy, np.eye(2)[start]) for policy in policies)
        assert solution.values[0, start] == pytest.approx(best, abs=1e-12)
    best_from_initial = max(forward_value(mdp, policy, mdp.initial) for policy in policies)
    assert solution.value == pytest.approx(best_from_initial, abs=1e-12)
    assert forward_value(mdp, solution.policy, mdp.initial) == pytest.approx(best_from_initial, abs=1e-12)


def test_stochastic_policy_evaluation_is_the_mixture_of_its_deterministic_parts():
    # The value is linear in the policy at a single step: mixing two policies at h = 0 only mixes their values.
    mdp = random_mdp(3, horizon=4, time_dependent=True)
    first, second = np.zeros((4, 6), dtype=int), np.zeros((4, 6), dtype=int)
    second[0] = 2
    mixture = np.eye(3)[first]
    mixture[0] = 0.3 * np.eye(3)[first[0]] + 0.7 * np.eye(3)[second[0]]
    expected = 0.3 * evaluate_policy(mdp, first).values[0] + 0.7 * evaluate_policy(mdp, second).values[0]
    np.testing.assert_allclose(evaluate_policy(mdp, mixture).values[0], expected, rtol=0, atol=1e-12)


def test_discounted_evaluation_of_a_stochastic_policy_is_the_linear_solve_of_its_mixed_chain():
    mdp = random_mdp(17, discount=0.9)
    policy = np.random.default_rng(18).dirichlet(np.ones(3), size=6)
    transitions = np.einsum("sa,sat->st", policy, mdp.transitions)
    expected = np.linalg.solve(np.eye(6) - 0.9 * transitions, np.sum(policy * mdp.rewards, axis=-1))
    evaluation = evaluate_policy(mdp, policy)
    np.testing.assert_allclose(evaluation.values, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.sum(policy * evaluation.q, axis=-1), expected, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------ batched


@pytest.mark.parametrize("time_dependent", [False, True])
def test_batched_backward_induction_equals_one_mdp_at_a_time_and_numba_equals_numpy(time_dependent):
    mdps = [random_mdp(seed, n_states=5, n_actions=3, horizon=6, time_dependent=time_dependent) for seed in range(8)]
    transitions = np.stack([mdp.transitions for mdp in mdps])
    rewards = np.stack([mdp.rewards for mdp in mdps])
    initial = np.stack([mdp.initial for mdp in mdps])
    batch = {
        method: backward_induction_batch(transitions, rewards, 6, initial=initial, method=method)
        for method in ("numba", "numpy")
    }
    for method in ("numba", "numpy"):
        for b, mdp in enumerate(mdps):
            single = backward_induction(mdp, method=method)
            np.testing.assert_allclose(batch[method].q[b], single.q, rtol=0, atol=1e-12)
            np.testing.assert_allclose(batch[method].values[b], single.values, rtol=0, atol=1e-12)
            np.testing.assert_array_equal(batch[method].policy[b], single.policy)
            assert batch[method].value[b] == pytest.approx(single.value, abs=1e-12)
    np.testing.assert_allclose(batch["numba"].q, batch["numpy"].q, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(batch["numba"].policy, batch["numpy"].policy)


def test_batched_backward_induction_with_a_discount_and_no_start_distribution():
    mdp = random_mdp(4, horizon=5, discount=0.7)
    batch = backward_induction_batch(mdp.transitions[None], mdp.rewards[None], 5, discount=0.7)
    assert batch.value is None
    np.testing.assert_allclose(batch.values[0], backward_induction(mdp).values, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------- discounted


def linear_solve_values(mdp, policy):
    """V^pi = (I - gamma P_pi)^{-1} r_pi written out independently of the package."""
    states = np.arange(mdp.n_states)
    return np.linalg.solve(
        np.eye(mdp.n_states) - mdp.discount * mdp.transitions[states, policy], mdp.rewards[states, policy]
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_value_and_policy_iteration_agree_with_the_linear_solve_of_the_optimal_policy(seed):
    mdp = random_mdp(seed, n_states=12, n_actions=4, discount=0.95, sparse=seed == 2)
    vi = value_iteration(mdp, tol=1e-12)
    pi = policy_iteration(mdp)
    assert vi.converged and pi.converged
    np.testing.assert_array_equal(vi.policy, pi.policy)
    exact = linear_solve_values(mdp, pi.policy)
    np.testing.assert_allclose(pi.values, exact, rtol=0, atol=1e-10)
    np.testing.assert_allclose(vi.values, exact, rtol=0, atol=1e-10)
    # Bellman optimality: no action improves on V*.
    np.testing.assert_allclose(np.max(mdp.rewards + 0.95 * mdp.transitions @ exact, axis=-1), exact, atol=1e-10)
    assert np.all(np.nan_to_num(pi.history["value_increase"]) >= -1e-12)  # policy improvement is monotone
    assert evaluate_policy(mdp, pi.policy).value == pytest.approx(mdp.initial @ exact, abs=1e-10)


@pytest.mark.parametrize("tol", [1e-2, 1e-5, 1e-8])
def test_value_iteration_stopping_bound_is_honest(tol):
    mdp = random_mdp(5, n_states=10, n_actions=3, discount=0.97)
    exact = policy_iteration(mdp).values
    result = value_iteration(mdp, tol=tol)
    true_error = np.max(np.abs(result.values - exact))
    assert result.converged
    assert true_error <= result.error_bound + 1e-13
    assert result.error_bound <= tol


def test_value_iteration_on_constant_rewards_takes_the_hand_computed_number_of_steps():
    # r = 1 everywhere: V_k = (1 - gamma^k)/(1 - gamma) 1, so ||V_k - V_{k-1}|| = gamma^{k-1} and the bound
    # gamma^k/(1 - gamma) is also the true error. A span rule (pymdptoolbox) would stop at k = 1, 9 away from V*.
    gamma, tol = 0.9, 1e-6
    mdp = random_mdp(6, discount=gamma)
    mdp = TabularMDP(mdp.transitions, np.ones_like(mdp.rewards), mdp.initial, discount=gamma)
    result = value_iteration(mdp, tol=tol)
    expected_steps = int(np.ceil(np.log(tol * (1 - gamma)) / np.log(gamma)))
    assert result.n_iter == expected_steps
    assert np.max(np.abs(result.values - 1 / (1 - gamma))) == pytest.approx(result.error_bound, rel=1e-6)
    assert result.error_bound <= tol


def test_non_convergence_and_callback_stops_are_reported_as_data():
    mdp = random_mdp(7, discount=0.99)
    capped = value_iteration(mdp, tol=1e-12, max_iter=5)
    assert not capped.converged and capped.n_iter == 5 and "max_iter" in capped.message
    assert len(capped.history["bellman_residual"]) == 5
    stopped = value_iteration(mdp, callback=lambda state: state.n_iter == 3)
    assert not stopped.converged and stopped.n_iter == 3 and "callback" in stopped.message
    solver = PolicyIteration(mdp)
    solver.step()
    assert solver.values is not None and not np.isnan(solver.values).any()


def test_stepped_value_iteration_contracts_by_gamma():
    mdp = random_mdp(8, discount=0.6)
    solver = ValueIteration(mdp)
    residuals = [solver.step()["bellman_residual"] for _ in range(6)]
    assert all(later <= 0.6 * earlier + 1e-15 for earlier, later in itertools.pairwise(residuals))


# ------------------------------------------------------------------------------------------------ rollouts


@pytest.mark.parametrize(
    ("options", "stochastic"),
    [
        ({"horizon": 8}, False),
        ({"horizon": 8, "time_dependent": True, "sparse": True}, True),
        ({"horizon": 8, "discount": 0.9}, True),
    ],
)
@pytest.mark.parametrize("method", ["numba", "numpy"])
def test_rollout_mean_return_is_within_four_standard_errors_of_the_exact_value(options, stochastic, method):
    mdp = random_mdp(9, **options)
    if stochastic:
        policy = np.random.default_rng(10).dirichlet(np.ones(3), size=(8, 6))
    else:
        policy = backward_induction(mdp).policy
    episodes = rollouts(mdp, policy, 20_000, seed=11, method=method)
    gamma = 1.0 if mdp.discount is None else mdp.discount
    returns = episodes.rewards @ gamma ** np.arange(8)
    standard_error = returns.std(ddof=1) / np.sqrt(len(returns))
    assert abs(returns.mean() - evaluate_policy(mdp, policy).value) <= 4 * standard_error
    # Every sampled transition and action has positive probability, and rewards are the model's.
    h = np.arange(8)
    s, a, s_next = episodes.states[:, :-1], episodes.actions, episodes.states[:, 1:]
    transitions = mdp.transitions if mdp.transitions.ndim == 4 else mdp.transitions[None].repeat(8, axis=0)
    assert np.all(transitions[h, s, a, s_next] > 0)
    assert np.all(mdp.initial[episodes.states[:, 0]] > 0)
    probabilities = policy if stochastic else np.eye(3)[policy]
    assert np.all(probabilities[h, s, a] > 0)


def test_rollouts_repeat_under_a_seed_and_numba_and_numpy_draw_the_same_episodes():
    mdp = random_mdp(12, horizon=5, time_dependent=True, sparse=True)
    policy = np.random.default_rng(13).dirichlet(np.ones(3), size=(5, 6))
    first = rollouts(mdp, policy, 500, seed=14, method="numba")
    for again in (
        rollouts(mdp, policy, 500, seed=14),
        rollouts(mdp, policy, 500, np.random.default_rng(14), method="numpy"),
    ):
        for ours, theirs in zip(first, again, strict=True):
            np.testing.assert_array_equal(ours, theirs)
    other = rollouts(mdp, policy, 500, seed=15)
    assert not np.array_equal(first.states, other.states)


def test_guided_inverse_cdf_equals_a_full_search_at_every_boundary():
    # Rows with zeros inside and at the end; u at every cumulative value, every guide bucket edge and just below.
    rng = np.random.default_rng(16)
    probabilities = rng.dirichlet(np.ones(7), size=20) * (rng.random((20, 7)) > 0.3)
    probabilities[:, 0] += probabilities.sum(axis=-1) == 0
    rows = cumulative_rows(probabilities / probabilities.sum(axis=-1, keepdims=True))
    guides = _guide_table(rows)
    for row, guide in zip(rows, guides, strict=True):
        points = np.concatenate([row[row < 1], np.arange(len(guide)) / len(guide), rng.random(50)])
        for u in np.concatenate([points, np.nextafter(points, -1.0)]).clip(0.0, np.nextafter(1.0, 0.0)):
            assert _inverse_cdf(row, guide, u) == np.searchsorted(row, u, side="right")


def test_cumulative_rows_end_exactly_at_one_from_the_last_positive_entry():
    rows = cumulative_rows(np.array([[0.1, 0.2, 0.7, 0.0, 0.0], [0.0, 0.3, 0.0, 0.7, 0.0]]))
    np.testing.assert_array_equal(rows[:, 2:], [[1.0, 1.0, 1.0], [0.3, 1.0, 1.0]])
    assert rows[0, 1] == pytest.approx(0.3)


# ------------------------------------------------------------------------------------------------ validation

P = np.full((2, 2, 2), 0.5)
R = np.zeros((2, 2))
RHO = np.array([1.0, 0.0])


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"transitions": P * 0.9}, ValueError, r"^transitions: expected rows summing to 1 .* row \(0, 0\) sums to 0.9"),
        ({"transitions": np.array([[[1.5, -0.5]] * 2] * 2)}, ValueError, "^transitions: expected non-negative"),
        (
            {"transitions": np.where(np.eye(2)[:, None, :] > 0, np.nan, 0.5)},
            ValueError,
            "^transitions: expected finite",
        ),
        ({"rewards": np.array([[0.0, np.inf], [0.0, 0.0]])}, ValueError, "^rewards: expected finite"),
        ({"transitions": np.full((2, 2, 3), 1 / 3)}, ValueError, r"^transitions: expected shape"),
        ({"rewards": np.zeros((3, 2))}, ValueError, r"^rewards: expected shape"),
        ({"initial": [0.5, 0.25, 0.25]}, ValueError, r"^initial: expected shape \(2,\)"),
        ({"initial": [0.5, 0.6]}, ValueError, "^initial: expected rows summing to 1"),
        ({"transitions": np.full((4, 2, 2, 2), 0.5)}, ValueError, "^horizon: expected 4"),
        ({"rewards": np.zeros((2, 2, 2)), "horizon": None, "discount": 0.9}, ValueError, "^horizon: time-dependent"),
        ({"horizon": None}, ValueError, "^horizon: expected a horizon"),
        ({"horizon": 0}, ValueError, "^horizon: expected an int >= 1"),
        ({"horizon": 2.0}, TypeError, "^horizon: expected an int"),
        ({"discount": 1.0}, ValueError, "^discount: expected 0 <= gamma < 1"),
        ({"transitions": "not an array"}, TypeError, "^transitions: expected an array"),
    ],
)
def test_invalid_models_raise_errors_naming_the_argument(arguments, error, match):
    with pytest.raises(error, match=match):
        TabularMDP(**{"transitions": P, "rewards": R, "initial": RHO, "horizon": 3} | arguments)


def test_model_arrays_are_read_only_copies():
    transitions = P.copy()
    mdp = TabularMDP(transitions, R, RHO, horizon=2)
    transitions[0, 0] = [1.0, 0.0]
    assert mdp.transitions[0, 0, 0] == 0.5
    with pytest.raises(ValueError, match="read-only"):
        mdp.rewards[0, 0] = 1.0


def test_invalid_solver_inputs_raise_errors_naming_the_argument():
    finite, discounted = TabularMDP(P, R, RHO, horizon=3), TabularMDP(P, R, RHO, discount=0.5)
    with pytest.raises(ValueError, match="^transitions: expected rows summing to 1"):
        backward_induction_batch(np.stack([P, P * 0.5]), np.stack([R, R]), 3)
    with pytest.raises(ValueError, match="^horizon: expected 4"):
        backward_induction_batch(np.stack([np.stack([P] * 4)]), R[None], 3)
    with pytest.raises(ValueError, match="^rewards: expected shape"):
        backward_induction_batch(P[None], np.zeros((2, 2, 2)), 3)
    with pytest.raises(ValueError, match="^method: expected one of"):
        backward_induction(finite, method="fortran")
    with pytest.raises(ValueError, match="^mdp: backward induction needs a finite-horizon"):
        backward_induction(discounted)
    with pytest.raises(ValueError, match="^mdp: value iteration needs a discounted"):
        value_iteration(finite)
    with pytest.raises(ValueError, match=r"^policy: expected actions in \[0, 2\)"):
        evaluate_policy(finite, np.full((3, 2), 2))
    with pytest.raises(ValueError, match=r"^policy: expected shape \(2,\)"):
        evaluate_policy(discounted, np.zeros((3, 2), dtype=int))
    with pytest.raises(TypeError, match="^seed: expected an int"):
        rollouts(finite, np.zeros((3, 2), dtype=int), 10, seed=None)
