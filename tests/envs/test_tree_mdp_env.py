"""ROVER's tree environment: the gymnasium contract, the leaf rewards, exact values of uniform and greedy play."""

import itertools

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the lab's environment ids)
from envs.tree_mdp import RoverTreeEnv
from theory.rover_tree import RoverTree, random_tree

ENV_ID = "lab/RoverTree-v0"


def make(**kwargs):
    """The registered environment when the id exists, else a direct instance."""
    return gymnasium.make(ENV_ID, **kwargs) if ENV_ID in gymnasium.registry else RoverTreeEnv(**kwargs)


def play(env, choose_action):
    """One episode from a fresh (unseeded) reset: the return, the last info and the nodes visited."""
    node, _ = env.reset()
    nodes, total, terminated = [node], 0.0, False
    while not terminated:
        node, reward, terminated, truncated, info = env.step(choose_action(node))
        assert not truncated
        nodes.append(node)
        total += reward
    return total, info, nodes


@pytest.mark.filterwarnings("ignore:.*render modes.*")
def test_env_passes_the_gymnasium_checker():
    check_env(RoverTreeEnv())
    check_env(RoverTreeEnv(n_actions=3, depth=2, reward_distribution="uniform", redraw_every_episode=True))
    env = make(tree=random_tree(4, 3, seed=0))
    check_env(env.unwrapped)
    assert isinstance(env.unwrapped.tree, RoverTree)
    assert env.observation_space.n == 1 + 4 + 16 + 64 and env.action_space.n == 4


def test_every_path_pays_its_leaf_reward_at_the_last_step_only():
    tree = random_tree(3, 3, seed=1, reward_distribution="uniform")
    env = make(tree=tree)
    for leaf, actions in enumerate(itertools.product(range(3), repeat=3)):  # leaf l's actions: base-3 digits of l
        node, _ = env.reset(seed=leaf)
        assert node == 0
        for step, action in enumerate(actions):
            child = 3 * node + 1 + action
            node, reward, terminated, truncated, info = env.step(action)
            assert node == child and not truncated
            assert terminated == (step == 2)
        assert info == {"leaf": leaf} and node == tree.n_internal_nodes + leaf
        assert reward == tree.leaf_rewards[leaf] == tree.leaf_reward(node)
    assert env.unwrapped.tree is tree  # a given tree is never redrawn, seeded resets or not


def test_seeded_resets_draw_the_tree_and_unseeded_ones_keep_it():
    env = make(n_actions=2, depth=6, success_probability=0.5)
    env.reset(seed=3)
    first = env.unwrapped.tree.leaf_rewards
    env.reset()
    assert env.unwrapped.tree.leaf_rewards is first
    env.reset(seed=3)
    np.testing.assert_array_equal(env.unwrapped.tree.leaf_rewards, first)
    env.reset(seed=4)
    assert not np.array_equal(env.unwrapped.tree.leaf_rewards, first)  # 64 fair coins: equal with prob 2^-64
    redrawing = make(n_actions=2, depth=6, success_probability=0.5, redraw_every_episode=True)
    redrawing.reset(seed=3)
    np.testing.assert_array_equal(redrawing.unwrapped.tree.leaf_rewards, first)
    redrawing.reset()
    assert not np.array_equal(redrawing.unwrapped.tree.leaf_rewards, first)


def test_mean_return_of_the_uniform_policy_is_q_u_at_the_root_within_four_standard_errors():
    tree = random_tree(3, 4, seed=2, success_probability=0.3)
    env = make(tree=tree)
    rng = np.random.default_rng(0)
    returns = np.array([play(env, lambda node: int(rng.integers(3)))[0] for _ in range(4000)])
    standard_error = returns.std(ddof=1) / np.sqrt(returns.size)
    exact = tree.uniform_q[0].mean()  # V_u(root) = (1/A) sum_a Q_u(root, a), the mean leaf reward
    assert abs(returns.mean() - exact) <= 4 * standard_error and standard_error > 0


@pytest.mark.parametrize("seed", range(20))
def test_greedy_play_on_q_u_earns_v_star_with_any_tie_breaking(seed):
    env = make(n_actions=3, depth=4, success_probability=0.05)
    env.reset(seed=seed)
    tree = env.unwrapped.tree
    rng = np.random.default_rng(seed)

    def greedy_random_tie(node):
        q = tree.uniform_q[node]
        return int(rng.choice(np.flatnonzero(q == q.max())))

    for choose_action in (lambda node: int(np.argmax(tree.uniform_q[node])), greedy_random_tie):
        for _ in range(5):
            total, _, _ = play(env, choose_action)
            assert total == tree.optimal_value


def test_greedy_play_can_miss_v_star_with_real_rewards():
    env = make(tree=RoverTree([1.0, 0.0, 0.6, 0.6], n_actions=2))
    total, info, nodes = play(env, lambda node: int(np.argmax(env.unwrapped.tree.uniform_q[node])))
    assert total == 0.6 < env.unwrapped.tree.optimal_value == 1.0 and nodes[1] == 2


def test_bad_arguments_and_steps_out_of_order_are_rejected():
    env = RoverTreeEnv(n_actions=2, depth=1)
    with pytest.raises(RuntimeError, match="^tree: no tree"):
        env.tree  # noqa: B018
    with pytest.raises(RuntimeError, match="^step: call reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="^action"):
        env.step(2)
    env.step(1)
    with pytest.raises(RuntimeError, match="^step: the episode ended"):
        env.step(0)
    with pytest.raises(TypeError, match="^tree"):
        RoverTreeEnv(tree=[1.0, 0.0])
    with pytest.raises(ValueError, match="^depth: expected 2"):
        RoverTreeEnv(tree=RoverTree([1.0, 0.0, 0.0, 0.0], n_actions=2), depth=3)
    with pytest.raises(ValueError, match="^redraw_every_episode"):
        RoverTreeEnv(tree=RoverTree([1.0, 0.0], n_actions=2), redraw_every_episode=True)
    with pytest.raises(ValueError, match="^success_probability"):
        RoverTreeEnv(success_probability=2.0)
    with pytest.raises(ValueError, match="^reward_distribution"):
        RoverTreeEnv(reward_distribution="normal")
