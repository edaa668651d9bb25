"""ROVER's theorem on trees: greedy on the uniform policy's Q is optimal for binary rewards, not for real ones."""

import itertools

import numpy as np
import pytest

from theory.rover_tree import (
    RoverTree,
    evaluate_tree_policy,
    greedy_optimality_gap,
    greedy_policy,
    leaf_probabilities,
    nodes_above_depth,
    optimal_q,
    random_leaf_rewards,
    random_tree,
    softmax_policy,
    uniform_q,
)
from theory.tabular import backward_induction, evaluate_policy, rollouts

SHAPES = [(n_actions, depth) for n_actions in (2, 3, 4) for depth in range(1, 7)]
SUCCESS_PROBABILITIES = (0.02, 0.1, 0.3, 0.6)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_every_greedy_action_is_optimal_on_ten_thousand_random_binary_trees():
    # 18 shapes x 4 success probabilities x 140 trees = 10,080 trees, at every internal node, any tie-breaking.
    n_trees = 0
    for index, ((n_actions, depth), p) in enumerate(itertools.product(SHAPES, SUCCESS_PROBABILITIES)):
        leaf_rewards = random_leaf_rewards(n_actions, depth, seed=index, n_trees=140, success_probability=p)
        assert np.all(greedy_optimality_gap(leaf_rewards, n_actions) == 0.0), (n_actions, depth, p)
        for tie_break in ("first", "uniform"):
            policy = greedy_policy(uniform_q(leaf_rewards, n_actions), tie_break=tie_break)
            value = evaluate_tree_policy(policy, leaf_rewards).value  # products of 1/A: exact up to rounding
            np.testing.assert_allclose(value, leaf_rewards.max(axis=-1), rtol=0, atol=1e-12)
        n_trees += leaf_rewards.shape[0]
    assert n_trees >= 10_000


def test_any_two_valued_rewards_keep_the_theorem():
    # r in {c, c + R}: Q_u = c + R (fraction of correct leaves), an affine image of the binary case.
    leaf_rewards = 0.2 + 0.7 * random_leaf_rewards(3, 4, seed=1, n_trees=500, success_probability=0.1)
    assert np.all(greedy_optimality_gap(leaf_rewards, 3) <= 1e-15)


def test_ties_are_common_on_binary_trees_so_the_any_tie_break_check_has_teeth():
    leaf_rewards = random_leaf_rewards(3, 4, seed=0, n_trees=200, success_probability=0.1)
    q = uniform_q(leaf_rewards, 3)
    n_maximisers = np.sum(q == q.max(axis=-1, keepdims=True), axis=-1)
    somewhere_correct = optimal_q(leaf_rewards, 3).max(axis=-1) == 1.0
    assert np.any((n_maximisers > 1) & somewhere_correct)  # a tie among actions at a node that can still succeed


def test_the_hand_built_real_valued_counterexample():
    # Left subtree: one leaf of 1 among zeros, Q_u = 0.5, Q* = 1. Right: two leaves of 0.6, Q_u = 0.6, Q* = 0.6.
    tree = RoverTree([1.0, 0.0, 0.6, 0.6], n_actions=2)
    np.testing.assert_array_equal(tree.uniform_q[0], [0.5, 0.6])
    np.testing.assert_array_equal(tree.optimal_q[0], [1.0, 0.6])
    greedy = evaluate_tree_policy(greedy_policy(tree.uniform_q), tree.leaf_rewards)
    assert greedy.value == 0.6 and tree.optimal_value == 1.0
    np.testing.assert_allclose(greedy_optimality_gap(tree.leaf_rewards, 2), [0.4, 0.0, 0.0])
    # ROVER's softmax tends to the greedy 0.6, not to V* = 1, as tau -> 0.
    assert evaluate_tree_policy(softmax_policy(tree.uniform_q, 1e-3), tree.leaf_rewards).value == pytest.approx(0.6)


def test_greedy_fails_on_many_random_real_valued_trees():
    failures = {}
    for index, (n_actions, depth) in enumerate([(2, 2), (2, 4), (3, 3), (4, 2)]):
        leaf_rewards = random_leaf_rewards(n_actions, depth, seed=index, n_trees=2000, reward_distribution="uniform")
        value = evaluate_tree_policy(greedy_policy(uniform_q(leaf_rewards, n_actions)), leaf_rewards).value
        failures[n_actions, depth] = np.mean(value < leaf_rewards.max(axis=-1))
    # Measured (2,000 trees each): 0.17 on (2, 2), 0.62 on (2, 4), 0.71 on (3, 3), 0.51 on (4, 2).
    assert all(rate > 0.1 for rate in failures.values()), failures


def test_q_u_and_v_star_by_brute_force_over_action_sequences():
    n_actions, depth = 3, 3
    tree = random_tree(n_actions, depth, seed=3, reward_distribution="uniform")
    paths = list(itertools.product(range(n_actions), repeat=depth))  # leaf l's actions: the base-A digits of l
    for node_depth in range(depth):
        for k, prefix in enumerate(itertools.product(range(n_actions), repeat=node_depth)):
            node = nodes_above_depth(n_actions, node_depth) + k
            for action in range(n_actions):
                below = [
                    r
                    for r, path in zip(tree.leaf_rewards, paths, strict=True)
                    if path[: node_depth + 1] == (*prefix, action)
                ]
                assert len(below) == n_actions ** (depth - node_depth - 1)
                assert tree.uniform_q[node, action] == pytest.approx(np.mean(below), rel=1e-14)
                assert tree.optimal_q[node, action] == max(below)


@pytest.mark.parametrize(
    ("n_actions", "depth", "reward_distribution"), [(2, 6, "binary"), (3, 4, "uniform"), (4, 3, "binary")]
)
def test_tabular_backward_induction_and_policy_evaluation_agree_with_the_tree(n_actions, depth, reward_distribution):
    tree = random_tree(n_actions, depth, seed=n_actions + depth, reward_distribution=reward_distribution)
    mdp = tree.as_tabular_mdp()
    solution = backward_induction(mdp)
    assert solution.value == pytest.approx(tree.optimal_value, abs=1e-12)
    uniform = evaluate_policy(mdp, np.full((depth, mdp.n_states, n_actions), 1.0 / n_actions))
    for d in range(depth):
        nodes = slice(nodes_above_depth(n_actions, d), nodes_above_depth(n_actions, d + 1))
        np.testing.assert_allclose(solution.q[d, nodes], tree.optimal_q[nodes], atol=1e-12)
        np.testing.assert_allclose(uniform.q[d, nodes], tree.uniform_q[nodes], atol=1e-12)


def test_monte_carlo_return_of_the_uniform_policy_matches_q_u_at_the_root():
    tree = random_tree(3, 4, seed=11, success_probability=0.3)
    mdp = tree.as_tabular_mdp()
    episodes = rollouts(mdp, np.full((4, mdp.n_states, 3), 1.0 / 3), 20_000, seed=5)
    returns = episodes.rewards.sum(axis=1)
    standard_error = returns.std(ddof=1) / np.sqrt(returns.size)
    exact = tree.uniform_q[0].mean()  # V_u(root) = (1/A) sum_a Q_u(root, a)
    assert exact == pytest.approx(tree.leaf_rewards.mean())
    assert abs(returns.mean() - exact) <= 4 * standard_error and standard_error > 0


def test_softmax_success_closed_form_on_a_two_level_tree():
    # Leaves (1, 0, 0, 0): Q_u(root) = (1/2, 0), Q_u(node 1) = (1, 0), so success = sigmoid(1/(2 tau)) sigmoid(1/tau).
    tree = RoverTree([1.0, 0.0, 0.0, 0.0], n_actions=2)
    for tau in (0.1, 0.5, 1.0, 4.0):
        value = evaluate_tree_policy(softmax_policy(tree.uniform_q, tau), tree.leaf_rewards).value
        assert value == pytest.approx(sigmoid(0.5 / tau) * sigmoid(1.0 / tau), rel=1e-12)


def test_softmax_success_falls_with_temperature_from_v_star_to_the_uniform_value():
    temperatures = [0.0, 1e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0, np.inf]
    for index, ((n_actions, depth), p) in enumerate(itertools.product([(2, 5), (3, 3), (4, 3)], (0.05, 0.3))):
        leaf_rewards = random_leaf_rewards(n_actions, depth, seed=100 + index, n_trees=300, success_probability=p)
        q = uniform_q(leaf_rewards, n_actions)
        success = np.array([evaluate_tree_policy(softmax_policy(q, tau), leaf_rewards).value for tau in temperatures])
        assert np.all(np.diff(success, axis=0) <= 1e-12)  # non-increasing in tau, tree by tree
        np.testing.assert_allclose(success[:2], np.broadcast_to(leaf_rewards.max(axis=-1), (2, 300)), atol=1e-12)
        np.testing.assert_allclose(success[-1], leaf_rewards.mean(axis=-1), atol=1e-12)  # tau = inf: uniform


def test_higher_temperature_reaches_more_correct_answers():
    # Leaves of A = 4, H = 2: child 0 holds 2 correct leaves (Q_u = 1/2), child 1 holds 1 (Q_u = 1/4).
    tree = RoverTree([1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], n_actions=4)
    greedy = evaluate_tree_policy(softmax_policy(tree.uniform_q, 0.0), tree.leaf_rewards)
    warm = evaluate_tree_policy(softmax_policy(tree.uniform_q, 0.5), tree.leaf_rewards)
    uniform = evaluate_tree_policy(softmax_policy(tree.uniform_q, np.inf), tree.leaf_rewards)
    assert (greedy.optimal_leaves_reached, warm.optimal_leaves_reached, uniform.optimal_leaves_reached) == (2, 3, 3)
    assert greedy.optimal_leaf_entropy == pytest.approx(np.log(2))
    assert np.log(2) < warm.optimal_leaf_entropy < np.log(3)
    assert uniform.optimal_leaf_entropy == pytest.approx(np.log(3))
    assert greedy.value == 1.0 > warm.value > uniform.value == 3 / 16


def test_the_uniform_policy_spreads_evenly_over_correct_leaves_and_greedy_over_fewer():
    leaf_rewards = random_leaf_rewards(3, 4, seed=9, n_trees=500, success_probability=0.2)
    q = uniform_q(leaf_rewards, 3)
    n_correct = leaf_rewards.sum(axis=-1)
    greedy = evaluate_tree_policy(softmax_policy(q, 0.0), leaf_rewards)
    uniform = evaluate_tree_policy(softmax_policy(q, np.inf), leaf_rewards)
    solvable = n_correct > 0
    np.testing.assert_allclose(uniform.optimal_leaf_entropy[solvable], np.log(n_correct[solvable]), atol=1e-12)
    assert np.all(greedy.optimal_leaves_reached[solvable] <= n_correct[solvable])
    assert np.all(greedy.optimal_leaf_entropy[solvable] <= uniform.optimal_leaf_entropy[solvable] + 1e-12)
    assert np.any(greedy.optimal_leaves_reached[solvable] < n_correct[solvable])


def test_leaf_probabilities_are_a_distribution_in_leaf_order():
    policy = np.random.default_rng(0).dirichlet(np.ones(3), size=(5, 13))  # 5 trees, A = 3, H = 3
    probabilities = leaf_probabilities(policy)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0)
    # Leaf 5 = actions (0, 1, 2): root -> node 1 (a = 0) -> node 5 (a = 1) -> leaf (a = 2).
    np.testing.assert_allclose(probabilities[:, 5], policy[:, 0, 0] * policy[:, 1, 1] * policy[:, 5, 2])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="^leaf_rewards: expected a last axis of A\\^H"):
        uniform_q(np.zeros(6), 2)
    with pytest.raises(ValueError, match="^n_actions"):
        RoverTree(np.zeros(4), n_actions=1)
    with pytest.raises(ValueError, match="^leaf_rewards: expected finite"):
        RoverTree([0.0, np.nan], n_actions=2)
    with pytest.raises(ValueError, match="^temperature"):
        softmax_policy(np.zeros((1, 2)), -1.0)
    with pytest.raises(ValueError, match="^tie_break"):
        greedy_policy(np.zeros((1, 2)), tie_break="random")
    with pytest.raises(ValueError, match="^reward_distribution"):
        random_leaf_rewards(2, 2, seed=0, reward_distribution="gaussian")
    with pytest.raises(ValueError, match="^success_probability"):
        random_leaf_rewards(2, 2, seed=0, success_probability=1.5)
    with pytest.raises(ValueError, match="^depth"):
        random_leaf_rewards(2, 0, seed=0)
    with pytest.raises(ValueError, match="^policy: expected \\(A\\^H - 1\\)"):
        leaf_probabilities(np.full((4, 2), 0.5))
    with pytest.raises(ValueError, match="^tree: 5461 nodes"):
        random_tree(4, 6, seed=0).as_tabular_mdp()
    with pytest.raises(ValueError, match="^node"):
        RoverTree(np.zeros(4), n_actions=2).child(3, 0)
