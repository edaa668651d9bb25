"""Submodular grid-world environments: gymnasium's checker, F(tau) against the objective on the same trajectory,
marginal gains summing to F, and the exact tabular model against the environment's own steps."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the ids)
from theory.submodular import SubmodularMDP, evaluate_policy, rollout, solve_subpo

GRID_IDS = ("lab/CoverageGrid-v0", "lab/ItemCollection-v0", "lab/ExperimentDesign-v0", "lab/TwoRoomsCoverage-v0")
VARIANTS = [pytest.param(env_id, {}, id=env_id) for env_id in GRID_IDS] + [
    pytest.param("lab/CoverageGrid-v0", {"weights": "bimodal"}, id="coverage-bimodal"),
    pytest.param("lab/CoverageGrid-v0", {"weights": "gp", "instance_seed": 5}, id="coverage-gp"),
    pytest.param("lab/CoverageGrid-v0", {"start": None}, id="coverage-random-start"),
]


def play(env, actions, seed=0):
    """Reset, take ``actions``; return the cells, the rewards (F({s_0}) first) and the last info."""
    state, info = env.reset(seed=seed)
    states, rewards = [state], [info["marginal_gain"]]
    for action in actions:
        state, reward, terminated, truncated, info = env.step(int(action))
        states.append(state)
        rewards.append(reward)
        assert not terminated
    return np.array(states), np.array(rewards), info, truncated


@pytest.mark.parametrize("env_id, kwargs", VARIANTS)
def test_check_env_passes(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


@pytest.mark.parametrize("env_id, kwargs", VARIANTS)
def test_env_value_is_the_objective_of_its_trajectory_and_gains_sum_to_it(env_id, kwargs):
    env = gym.make(env_id, **kwargs).unwrapped
    actions = np.random.default_rng(1).integers(0, 5, env.horizon - 1)
    states, rewards, info, truncated = play(env, actions)
    assert truncated and info["time"] == env.horizon - 1 and len(states) == env.horizon
    visited = np.zeros(env.grid.n_states, dtype=bool)
    visited[states] = True
    assert env.objective_value() == info["F"] == pytest.approx(env.objective.value(visited), abs=1e-10)
    assert rewards.sum() == pytest.approx(info["F"], abs=1e-10)
    np.testing.assert_array_equal(env.visited, visited)
    with pytest.raises(RuntimeError, match="^step:"):
        env.step(0)


@pytest.mark.parametrize("env_id, kwargs", VARIANTS)
def test_tabular_model_transitions_equal_the_env_steps(env_id, kwargs):
    env = gym.make(env_id, **kwargs).unwrapped
    model = env.tabular_model()
    assert model.horizon == env.horizon - 1
    singletons = env.objective.singleton_values()
    rng = np.random.default_rng(2)
    for episode in range(3):
        actions = rng.integers(0, 5, env.horizon - 1)
        states, rewards, _, _ = play(env, actions, seed=episode)
        assert model.initial[states[0]] > 0
        for h, action in enumerate(actions):
            assert model.transitions[states[h], action, states[h + 1]] == 1.0
            assert model.rewards[states[h], action] == singletons[states[h + 1]]
    if env.start is None:
        np.testing.assert_allclose(model.initial, env.grid.free / env.grid.free.sum())


def test_random_starts_follow_the_reset_seed():
    env = gym.make("lab/CoverageGrid-v0", start=None).unwrapped
    starts = [env.reset(seed=seed)[0] for seed in (3, 3, 4, 5, 6)]
    assert starts[0] == starts[1] and len(set(starts)) > 1
    with pytest.raises(ValueError, match="^start:"):
        env.submodular_mdp()


def test_env_and_theory_rollouts_agree_and_subpo_trains_on_the_env_instance():
    env = gym.make("lab/ItemCollection-v0").unwrapped
    mdp = env.submodular_mdp()
    assert isinstance(mdp, SubmodularMDP) and mdp.horizon == env.horizon
    trajectories = rollout(mdp, np.zeros(mdp.logits_shape), 4, np.random.default_rng(0))
    for actions, gains in zip(trajectories.actions, trajectories.gains, strict=True):
        _, rewards, _, _ = play(env, actions)
        np.testing.assert_allclose(rewards, gains, atol=1e-12)
    uniform = evaluate_policy(mdp, n_samples=500, seed=0).mean
    result = solve_subpo(mdp, max_iter=60, learning_rate=0.2, n_eval=200, seed=0)
    assert 0.9 * env.objective.max_value <= result.evaluation.mean <= env.objective.max_value  # max F = 21
    assert uniform <= 0.7 * env.objective.max_value


def test_ansi_render_marks_agent_walls_and_visited_cells():
    env = gym.make("lab/TwoRoomsCoverage-v0", render_mode="ansi")
    env.reset(seed=0)
    env.step(3)  # col - 1: from (2, 6) to (2, 5)
    rows = env.render().splitlines()
    assert rows[2] == "....." + "A*" + "......." and rows[0] == "....######...." and len(rows) == 7


def test_registered_ids():
    for env_id in (*GRID_IDS, "lab/LatentMDP-v0"):
        assert env_id in gym.registry
    assert gym.registry["lab/LatentMDP-v0"].entry_point == "envs.latent_mdp:LatentMDPEnv"
