"""The torch MLP policy for SubPO: a linear layer on one-hot (step, state) features is the tabular softmax, with
the tabular gradient formula; the MLP samples from its own probabilities and beats the uniform policy."""

import numpy as np
import pytest
import torch

from lab.submodular_torch import MLPPolicy, MLPPolicyGradient, policy_loss, solve_mlp_subpo
from theory.submodular import (
    GridWorld,
    SubmodularMDP,
    advantages,
    evaluate_policy,
    grid_coverage,
    policy_gradient,
    reward_to_go_signal,
    rollout,
    softmax_policy,
)


def coverage_mdp(rows, cols, horizon, weights="constant"):
    grid = GridWorld(rows, cols)
    return SubmodularMDP(grid.next_state, grid_coverage(grid, weights=weights), 0, horizon)


def test_a_linear_layer_on_one_hot_step_state_features_has_the_tabular_softmax_gradient():
    mdp = coverage_mdp(2, 3, 4, weights="bimodal")
    theta = np.random.default_rng(0).normal(size=mdp.logits_shape)  # (H - 1, S, A)
    n_steps, n_states, n_actions = theta.shape
    policy = MLPPolicy(n_states, n_actions, n_steps, hidden=(), features="state_step", bias=False)
    (layer,) = policy.network
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(theta.reshape(n_steps * n_states, n_actions).T))  # W[a, h S + s]
    log_policy = policy.log_policy()
    np.testing.assert_allclose(np.exp(log_policy.detach().numpy()), softmax_policy(theta), rtol=0, atol=1e-15)
    trajectories = rollout(mdp, theta, 64, np.random.default_rng(1))
    advantage = advantages(reward_to_go_signal(trajectories.gains))
    assert np.abs(advantage).max() > 0.1  # a batch that carries signal
    policy_loss(log_policy, trajectories, advantage).backward()
    ascent = -layer.weight.grad.numpy().T.reshape(theta.shape)
    # 1/B sum_b sum_i A_{b,i} (e_{a_{b,i}} - pi(. | s_{b,i}, i)) at theta[i, s_{b,i}, :]
    np.testing.assert_allclose(ascent, policy_gradient(theta, trajectories, advantage), rtol=0, atol=1e-12)
    # one entry by hand: the first decision is taken at the start state by every trajectory
    start_probability = softmax_policy(theta)[0, 0]
    chosen = np.eye(n_actions)[trajectories.actions[:, 0]]
    by_hand = (advantage[:, :1] * (chosen - start_probability)).mean(axis=0)
    np.testing.assert_allclose(ascent[0, 0], by_hand, rtol=0, atol=1e-12)


def test_training_starts_uniform_and_samples_from_the_networks_table():
    mdp = coverage_mdp(4, 4, 6)
    solver = MLPPolicyGradient(mdp, batch_size=32, seed=np.random.default_rng(5))
    np.testing.assert_allclose(solver.policy, 1 / mdp.n_actions, rtol=0, atol=1e-15)  # last layer starts at zero
    stream = np.random.default_rng(5)
    for iteration in range(3):
        table = solver.logits
        metrics = solver.step()
        # each batch is theory's rollout of the network's current table, on the solver's own seeded stream
        expected = rollout(mdp, table, 32, stream)
        np.testing.assert_array_equal(solver.trajectories.states, expected.states)
        assert metrics["mean_objective"] == pytest.approx(expected.values.mean(), abs=1e-12)
        if iteration == 0:
            assert metrics["entropy"] == pytest.approx(np.log(mdp.n_actions), abs=1e-12)
    assert not np.allclose(solver.policy, 1 / mdp.n_actions)  # it learned
    np.testing.assert_allclose(solver.policy.sum(axis=-1), 1.0, rtol=0, atol=1e-12)


def test_mlp_subpo_beats_the_uniform_policy_on_a_small_coverage_grid():
    mdp = coverage_mdp(6, 6, 12)  # start (0, 0); F <= 2 (H + 1) = 26
    uniform = evaluate_policy(mdp, n_samples=1000, seed=0)
    result = solve_mlp_subpo(mdp, max_iter=100, batch_size=64, learning_rate=0.01, n_eval=1000, seed=0)
    # measured: MLP 21.0 +- 0.003, uniform 11.6 +- 0.1
    assert result.evaluation.mean >= 1.6 * uniform.mean
    assert result.evaluation.mean <= 2 * (mdp.horizon + 1)
    assert result.history["mean_objective"].shape == (result.n_iter,)
    again = solve_mlp_subpo(mdp, max_iter=5, batch_size=64, seed=0)
    np.testing.assert_array_equal(again.logits, solve_mlp_subpo(mdp, max_iter=5, batch_size=64, seed=0).logits)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="^features:"):
        MLPPolicy(3, 2, 2, features="pixels")
    with pytest.raises(ValueError, match="^hidden:"):
        MLPPolicy(3, 2, 2, hidden=(0,))
    mdp = coverage_mdp(2, 3, 4)
    with pytest.raises(ValueError, match="^signal:"):
        MLPPolicyGradient(mdp, signal="additive")
    with pytest.raises(TypeError, match="^seed:"):
        MLPPolicyGradient(mdp, seed=1.5)
