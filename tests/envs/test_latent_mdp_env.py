"""The latent-MDP environment: the gymnasium contract, a hidden context revealed at the end, exact mean returns."""

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the lab's environment ids)
from envs.latent_mdp import LatentMDPEnv
from theory.lmdp import HistoryPolicy, LatentMDP, evaluate_policy, optimal_policy, random_lmdp, revealing_lmdp

ENV_ID = "lab/LatentMDP-v0"


def make(lmdp=None):
    """The registered environment when the id exists, else a direct instance."""
    kwargs = {} if lmdp is None else {"lmdp": lmdp}
    return gymnasium.make(ENV_ID, **kwargs) if ENV_ID in gymnasium.registry else LatentMDPEnv(**kwargs)


@pytest.mark.filterwarnings("ignore:.*render modes.*")
def test_env_passes_the_gymnasium_checker():
    check_env(LatentMDPEnv())
    env = make(random_lmdp(seed=2))
    check_env(env.unwrapped)
    assert isinstance(env.unwrapped.model, LatentMDP)
    assert isinstance(make().unwrapped.model, LatentMDP)


def test_context_is_revealed_only_at_the_end_and_is_the_true_one():
    # With p = 1 the state after the probe is 1 + m, so the revealed context can be checked.
    env = make(revealing_lmdp(reveal_probability=1.0))
    counts = np.zeros(2)
    for episode in range(200):
        observation, info = env.reset(seed=episode)
        assert observation == (0, 0) and "context" not in info
        for step in range(3):
            observation, reward, terminated, truncated, info = env.step(0)
            assert observation[0] == step + 1 and not truncated
            if step == 0:
                signal = observation[1]
            assert terminated == (step == 2) and ("context" in info) == terminated
        assert info["context"] == signal - 1
        assert reward == (1.0 if info["context"] == 0 else 0.0)  # action 0 pays in context 0 only
        counts[info["context"]] += 1
    assert 70 < counts[0] < 130  # m ~ w = (1/2, 1/2); 200 episodes: mean 100, sd 7.1


def test_seeded_resets_repeat_the_episode():
    env = make(random_lmdp(seed=4))

    def rollout(seed):
        trajectory = [env.reset(seed=seed)[0]]
        for action in [0, 1, 1, 0]:
            observation, reward, *_ = env.step(action)
            trajectory.append((observation, reward))
        return trajectory

    assert rollout(11) == rollout(11)


def mean_return(env, policy, n_episodes, seed):
    """Monte-Carlo mean and standard error of the return of a history policy."""
    returns = np.empty(n_episodes)
    env.reset(seed=seed)
    for episode in range(n_episodes):
        (_, state), _ = env.reset()
        states, actions, total, terminated = [state], [], 0.0, False
        while not terminated:
            action = policy(states, actions)
            (_, state), reward, terminated, _, _ = env.step(action)
            states.append(state)
            actions.append(action)
            total += reward
        returns[episode] = total
    return returns.mean(), returns.std(ddof=1) / np.sqrt(n_episodes)


@pytest.mark.parametrize("which", ["optimal_on_revealing", "random_policy_on_random_lmdp"])
def test_mean_return_matches_the_exact_value_within_four_standard_errors(which):
    if which == "optimal_on_revealing":
        lmdp = revealing_lmdp()
        policy = optimal_policy(lmdp).policy
    else:
        lmdp = random_lmdp(2, 3, 2, 4, seed=5)
        size = optimal_policy(lmdp).policy.actions.size
        policy = HistoryPolicy(np.random.default_rng(0).integers(2, size=size), 3, 2, 4)
    exact = evaluate_policy(lmdp, policy).value
    mean, standard_error = mean_return(make(lmdp), policy, 4000, seed=1)
    assert abs(mean - exact) <= 4 * standard_error
    assert standard_error > 0


def test_bad_actions_and_steps_out_of_order_are_rejected():
    env = LatentMDPEnv()
    with pytest.raises(RuntimeError, match="^step: call reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="^action"):
        env.step(2)
    for _ in range(3):
        env.step(1)
    with pytest.raises(RuntimeError, match="^step: the episode ended"):
        env.step(0)
    with pytest.raises(TypeError, match="^lmdp"):
        LatentMDPEnv(lmdp="revealing")
