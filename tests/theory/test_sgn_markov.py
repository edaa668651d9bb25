"""SGN in a tabular Markov game: exact values and gradients, equilibria, Fisher bounds, NPG contraction."""

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

from theory.sgn.certificate import margin
from theory.sgn.games import DifferentiableGame
from theory.sgn.markov import (
    TabularMarkovGame,
    certify_markov,
    cooperative_game,
    euclidean_policy_gradient,
    euler_factor,
    fisher_bounds,
    gauge_basis,
    nash_equilibrium,
    natural_policy_gradient,
    policy_distance_inf,
    preference_game,
    preference_game_example,
    random_markov_game,
)

REGULARISATIONS = ["states", "discounted"]


def _policies(game, theta):
    """Softmax per state, written out independently of the module."""
    n1 = game.n_states * game.n_actions[0]
    return (
        softmax(theta[:n1].reshape(game.n_states, -1), axis=1),
        softmax(theta[n1:].reshape(game.n_states, -1), axis=1),
    )


def _truncated_values(game, theta, horizon=2000):
    """(1 - gamma) sum_{t < horizon} gamma^t rho^T P_pi^t c_i (+ tau sum_s H_i for "states"): no linear solve."""
    pi1, pi2 = _policies(game, theta)
    joint = pi1[:, :, None] * pi2[:, None, :]
    chain = np.einsum("sab,sabt->st", joint, game.transitions)
    entropy = [-np.sum(pi * np.log(pi), axis=1) for pi in (pi1, pi2)]
    values = []
    for i in range(2):
        cost = np.einsum("sab,sab->s", joint, game.rewards[i])
        if game.regularisation == "discounted":
            cost = cost + game.tau * entropy[i]
        distribution, total = game.rho.copy(), 0.0
        for t in range(horizon):
            total += game.gamma**t * distribution @ cost
            distribution = distribution @ chain
        value = (1 - game.gamma) * total
        if game.regularisation == "states":
            value += game.tau * entropy[i].sum()
        values.append(value)
    return np.array(values)


@pytest.mark.parametrize("regularisation", REGULARISATIONS)
def test_exact_value_equals_the_truncated_discounted_series(regularisation):
    games = [
        random_markov_game(3, (2, 3), regularisation=regularisation, seed=4),
        cooperative_game(regularisation=regularisation),
    ]
    rng = np.random.default_rng(0)
    for game in games:
        for theta in rng.normal(size=(3, game.dim)):
            np.testing.assert_allclose(game.value(theta), _truncated_values(game, theta), rtol=0, atol=1e-10)


@pytest.mark.parametrize("regularisation", REGULARISATIONS)
def test_policy_gradient_matches_central_differences_of_the_value(regularisation):
    game = random_markov_game(3, (2, 3), regularisation=regularisation, seed=1)
    theta = np.random.default_rng(2).normal(size=game.dim)
    gradient, h = game.policy_gradient(theta), 1e-6
    numerical = np.empty(game.dim)
    for k in range(game.dim):
        step = np.zeros(game.dim)
        step[k] = h
        player = 0 if k < game.blocks[0] else 1
        numerical[k] = (game.value(theta + step)[player] - game.value(theta - step)[player]) / (2 * h)
    np.testing.assert_allclose(gradient, numerical, rtol=1e-6, atol=1e-6 * np.abs(gradient).max())
    # F_i[s] = -tau k(s) Phi_i[s] (T_i[s] - theta_i[s]): k = d ("discounted") or 1 ("states")
    evaluation = game.evaluate(theta)
    response = evaluation.response_logits
    k = evaluation.occupancy if regularisation == "discounted" else np.ones(game.n_states)
    for part, pi in zip(game.slices, evaluation.policies, strict=True):
        a = pi.shape[1]
        for s in range(game.n_states):
            block = slice(part.start + s * a, part.start + (s + 1) * a)
            phi = np.diag(pi[s]) - np.outer(pi[s], pi[s])
            expected = game.tau * k[s] * phi @ (response[block] - theta[block])
            np.testing.assert_allclose(gradient[block], expected, rtol=0, atol=1e-12)
    batch = np.stack([theta, theta + 1.0])  # the evaluation is vectorised over leading axes
    np.testing.assert_allclose(game.policy_gradient(batch)[0], gradient, rtol=0, atol=1e-14)


def test_complex_step_jacobian_matches_differences_and_kills_the_gauge():
    game = random_markov_game(2, (3, 2), regularisation="discounted", seed=7)
    theta = np.random.default_rng(3).normal(size=game.dim)
    jacobian = game.jacobian(theta)
    finite_differences = DifferentiableGame(game.pseudo_gradient, game.blocks, fd_step=1e-5).jacobian(theta)
    np.testing.assert_allclose(jacobian, finite_differences, rtol=0, atol=1e-8)
    np.testing.assert_allclose(game.as_differentiable_game().jacobian(theta), jacobian, rtol=0, atol=0)
    # a per-state constant shift of one player's logits changes nothing: J u = 0 and u^T J = 0 (u^T F = 0)
    basis = game.gauge_basis()
    gauge = np.linalg.svd(basis.T)[2][basis.shape[1] :]
    assert gauge.shape[0] == game.n_states * 2
    np.testing.assert_allclose(jacobian @ gauge.T, 0, atol=1e-12)
    np.testing.assert_allclose(gauge @ jacobian, 0, atol=1e-12)
    np.testing.assert_allclose(gauge @ game.pseudo_gradient(theta), 0, atol=1e-14)


def test_fisher_blocks_and_gauge_basis():
    game = random_markov_game(3, (2, 3), seed=0)
    theta = np.random.default_rng(1).normal(size=game.dim)
    fisher = game.fisher(theta, eps=1e-3)
    pi1, pi2 = _policies(game, theta)
    for f, pi, u in zip(fisher, (pi1, pi2), game.gauge_bases(), strict=True):
        a = pi.shape[1]
        for s in range(game.n_states):
            block = f[s * a : (s + 1) * a, s * a : (s + 1) * a]
            np.testing.assert_allclose(block, np.diag(pi[s]) - np.outer(pi[s], pi[s]) + 1e-3 * np.eye(a), atol=1e-15)
            ones = np.zeros(f.shape[0])
            ones[s * a : (s + 1) * a] = 1
            np.testing.assert_allclose(f @ ones, 1e-3 * ones, atol=1e-15)  # the gauge has eigenvalue eps
        np.testing.assert_allclose(u.T @ u, np.eye(u.shape[1]), atol=1e-14)
        np.testing.assert_allclose(u.T @ np.kron(np.eye(game.n_states), np.ones((a, 1))), 0, atol=1e-14)
    assert gauge_basis(1, 2) == pytest.approx(np.array([[1.0], [-1.0]]) / np.sqrt(2))


def _soft_best_response(game, theta, player, iterations=700):
    """Soft value iteration on player's MDP against the other's fixed policy: (policy, normalised value)."""
    pi1, pi2 = _policies(game, theta)
    if player == 0:
        reward = np.einsum("sab,sb->sa", game.rewards[0], pi2)
        transition = np.einsum("sabt,sb->sat", game.transitions, pi2)
    else:
        reward = np.einsum("sab,sa->sb", game.rewards[1], pi1)
        transition = np.einsum("sabt,sa->sbt", game.transitions, pi1)
    v = np.zeros(game.n_states)
    for _ in range(iterations):
        q = reward + game.gamma * transition @ v
        v = game.tau * logsumexp(q / game.tau, axis=1)
    return softmax(q / game.tau, axis=1), (1 - game.gamma) * game.rho @ v


def test_discounted_equilibrium_is_the_soft_best_response_to_the_other_player():
    game = random_markov_game(3, (2, 3), regularisation="discounted", seed=1)
    result = nash_equilibrium(game, np.random.default_rng(2).normal(size=game.dim))
    assert result.converged and result.residual <= 1e-10
    assert np.linalg.norm(game.pseudo_gradient(result.theta)) <= 1e-10
    values = game.value(result.theta)
    for player in range(2):
        policy, best_value = _soft_best_response(game, result.theta, player)
        np.testing.assert_allclose(result.policies[player], policy, rtol=0, atol=1e-9)
        assert values[player] == pytest.approx(best_value, abs=1e-10)
    # the stationarity form: pi_i = softmax(Q_i / tau)
    evaluation = game.evaluate(result.theta)
    for player in range(2):
        np.testing.assert_allclose(softmax(evaluation.q_values[player] / game.tau, axis=1), result.policies[player])


def test_states_equilibrium_has_no_profitable_unilateral_deviation():
    game = random_markov_game(3, (2, 3), regularisation="states", seed=1)
    result = nash_equilibrium(game, np.random.default_rng(2).normal(size=game.dim))
    assert result.converged and np.linalg.norm(game.pseudo_gradient(result.theta)) <= 1e-10
    evaluation = game.evaluate(result.theta)
    rng = np.random.default_rng(5)
    for player, part in enumerate(game.slices):
        # the paper's regularisation: pi_i(. | s) = softmax(d(s) Q_i(s, .) / tau)
        stationary = softmax(evaluation.occupancy[:, None] * evaluation.q_values[player] / game.tau, axis=1)
        np.testing.assert_allclose(result.policies[player], stationary, rtol=0, atol=1e-12)

        def negative(own, player=player, part=part):
            theta = result.theta.copy()
            theta[part] = own
            return -game.value(theta)[player], -game.policy_gradient(theta)[part]

        best = min(
            minimize(negative, 3 * rng.normal(size=part.stop - part.start), jac=True, method="BFGS", tol=1e-12).fun
            for _ in range(6)
        )
        assert -best <= evaluation.values[player] + 1e-10  # no start finds a better response


def test_nash_solver_follows_the_solver_conventions():
    game = cooperative_game()
    theta0 = np.random.default_rng(0).normal(size=game.dim)
    result = nash_equilibrium(game, theta0)
    assert result.converged and result.n_iter == len(result.history["residual"]) and "converged" in result.message
    assert result.residual <= 1e-10 and np.all(np.diff(result.history["fixed_point_residual"]) < 0)
    # the cooperative game's equilibrium is the uniform policy; theta is centred per state (gauge fixed)
    np.testing.assert_allclose(result.theta, 0, atol=1e-10)
    np.testing.assert_allclose(result.policies[0], 0.5, atol=1e-10)
    stopped = nash_equilibrium(game, theta0, callback=lambda state: state.n_iter >= 1)
    assert not stopped.converged and stopped.n_iter == 1 and "callback" in stopped.message


@pytest.fixture(scope="module")
def cooperative():
    game = cooperative_game()
    theta_star = nash_equilibrium(game).theta
    return game, theta_star, certify_markov(game, theta_star)


def test_cooperative_fisher_certificate(cooperative):
    game, theta_star, certificate = cooperative
    bounds = certificate.bounds
    assert bounds.n_points == 2**8 + 1 and bounds.blocks == (2, 2) and bounds.jacobians.shape == (257, 4, 4)
    # the players are interchangeable, so mu1 = mu2, L12 = L21, and the optimal ratio is 1
    assert bounds.mu[0] == pytest.approx(bounds.mu[1], rel=1e-12)
    assert bounds.coupling[0, 1] == pytest.approx(bounds.coupling[1, 0], rel=1e-12)
    np.testing.assert_allclose(certificate.weights, [1.0, 1.0], rtol=1e-12)
    mu, coupling = bounds.mu[0], bounds.coupling[0, 1]
    assert certificate.certified and certificate.margin == pytest.approx(mu - coupling, abs=1e-12)
    assert certificate.spectral_radius == pytest.approx(coupling / mu, rel=1e-12)
    # regression values of this implementation (the paper's game and regularisation)
    assert mu == pytest.approx(0.932510, abs=1e-6) and coupling == pytest.approx(0.599707, abs=1e-6)
    assert certificate.margin == pytest.approx(0.332803, abs=1e-6)
    assert certificate.lipschitz == pytest.approx(1.568598, abs=1e-6)
    assert certificate.euler_step == pytest.approx(certificate.margin / certificate.lipschitz**2, rel=1e-12)
    # equal curvatures and couplings: the band is symmetric under r -> 1/r
    low, high = certificate.band
    assert low < 1 < high and low * high == pytest.approx(1.0, rel=1e-10)
    assert (low, high) == pytest.approx((0.132648, 7.538739), abs=1e-5)
    # the notes' band [0.18, 5.3] is the paper's 20-point grid of r in [0.01, 100] where alpha(r) >= 0
    grid = np.logspace(-2, 2, 20)
    inside = grid[[margin(bounds.mu, bounds.coupling, [1.0, r]) >= 0 for r in grid]]
    assert (inside.min(), inside.max()) == pytest.approx((0.1833, 5.4556), abs=1e-3)
    # the grid bound is conservative: at theta* alone the block margin is larger
    at_center = fisher_bounds(game, theta_star, radius=0.0)
    assert at_center.n_points == 1
    assert margin(at_center.mu, at_center.coupling, [1, 1]) > certificate.margin
    # the unweighted Fisher margin min lambda_min(sym Jt) beats the block bound here
    assert bounds.euclidean_margin == pytest.approx(0.369118, abs=1e-6)


def test_discounted_regularisation_needs_a_larger_temperature():
    # the occupancy-weighted entropy of the standard regularised MDP is weaker here: tau = 1 is not certified
    weak = certify_markov(cooperative_game(regularisation="discounted"))
    assert not weak.certified and weak.band is None and weak.spectral_radius > 1
    strong = certify_markov(cooperative_game(regularisation="discounted", tau=2.0))
    assert strong.certified and strong.weights[1] == pytest.approx(1.0, rel=1e-12)


def test_npg_at_the_certified_step_contracts_no_worse_than_certified(cooperative):
    game, theta_star, certificate = cooperative
    step = certificate.euler_step
    factor = certificate.euler_factor(step)
    assert factor == pytest.approx(np.sqrt(1 - certificate.margin**2 / certificate.lipschitz**2), rel=1e-12)
    assert factor < 1 and euler_factor(certificate.bounds, certificate.weights, step) == pytest.approx(factor)
    rng = np.random.default_rng(1)
    for radius in (0.1, 0.1, 0.05, 0.05, 0.02):
        theta0 = theta_star + radius * rng.choice([-1.0, 1.0], size=game.dim)
        theta0[::2] = theta_star[::2] + radius  # every state's two logits differ: a non-gauge start
        result = natural_policy_gradient(game, theta0, step=step, n_steps=200, theta_star=theta_star)
        distance, ratio = result.history["distance"], result.history["contraction"]
        previous = np.concatenate([[result.initial_distance], distance[:-1]])
        assert result.initial_distance > 1e-3 and distance[-1] < 1e-4 * result.initial_distance
        assert np.max(ratio[previous > 1e-10]) <= factor + 1e-9
        # the trajectory's policies stay in the certified cube
        assert np.max(policy_distance_inf(game, result.trajectory, theta_star)) <= 0.1 + 1e-12
    # asymptotically the ratio is the spectral radius of the linearised NPG map I - h Jt(theta*)
    linear = np.eye(4) - step * certificate.bounds.jacobians[0]
    assert ratio[-1] == pytest.approx(np.max(np.abs(np.linalg.eigvals(linear))), rel=1e-4)


def test_euclidean_pg_converges_slower_at_the_same_step(cooperative):
    game, theta_star, certificate = cooperative
    step = certificate.euler_step
    theta0 = theta_star + 0.05 * np.array([1.0, -1.0, -1.0, 1.0, 1.0, 1.0, -1.0, -1.0])
    npg = natural_policy_gradient(game, theta0, step=step, n_steps=300, theta_star=theta_star)
    pg = euclidean_policy_gradient(game, theta0, step=step, n_steps=300, theta_star=theta_star)
    assert npg.history["distance"][-1] < 1e-3 * pg.history["distance"][-1]
    # at uniform policies G_i = 1/2 + eps: NPG is PG with its step divided by 1/2 + eps
    basis = game.gauge_basis()
    linear = np.eye(4) - step * basis.T @ game.jacobian(theta_star) @ basis
    # (after 300 steps the second mode, 1 - h 0.275, still shows in the last ratio at the 1e-4 level)
    assert pg.history["contraction"][-1] == pytest.approx(np.max(np.abs(np.linalg.eigvals(linear))), abs=1e-3)
    assert npg.history["contraction"][-1] < pg.history["contraction"][-1]
    # far above the certified bound NPG no longer converges
    unstable = natural_policy_gradient(
        game, theta0, step=10 * certificate.euler_step_bound, n_steps=500, theta_star=theta_star
    )
    assert unstable.history["residual"][-1] > 1e-3


def test_timescales_are_certified_in_the_rescaled_metric(cooperative):
    game, theta_star, certificate = cooperative
    timescales, step = np.array([1.0, 2.0]), 0.5 * certificate.euler_step
    factor = euler_factor(certificate.bounds, certificate.weights, step, timescales)
    assert factor < 1
    theta0 = theta_star + 0.08 * np.array([1.0, -1.0, 1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
    result = natural_policy_gradient(
        game, theta0, step=step, n_steps=200, theta_star=theta_star, weights=certificate.weights, timescales=timescales
    )
    np.testing.assert_allclose(result.metric_weights, certificate.weights / timescales)
    assert np.max(result.history["contraction"]) <= factor + 1e-9


def test_preference_game_sgn_adds_nothing():
    for preferences, beta, reference in [
        (np.array([[0.5, 0.0, 1.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.5]]), 1.0, None),
        (
            0.5 + np.array([[0, 0.3, -0.4, 0.1], [-0.3, 0, 0.2, -0.5], [0.4, -0.2, 0, 0.25], [-0.1, 0.5, -0.25, 0]]),
            0.2,
            np.array([0.4, 0.3, 0.2, 0.1]),
        ),
    ]:
        example = preference_game_example(preferences, beta, reference)
        optimal, unit = example.optimal, example.unit
        assert example.nash.converged and example.skew_defect < 1e-12
        assert optimal.weights[1] == pytest.approx(1.0, abs=1e-12)
        assert optimal.margin == pytest.approx(unit.margin, abs=1e-9)
        assert optimal.lipschitz == pytest.approx(unit.lipschitz, abs=1e-9)
        mu, coupling = optimal.bounds.mu, optimal.bounds.coupling
        assert coupling[0, 1] == pytest.approx(coupling[1, 0], rel=1e-12)
        # with skew coupling the w = 1 Fisher margin is min_i mu_i: the block bound only loses
        assert optimal.bounds.euclidean_margin == pytest.approx(mu.min(), abs=1e-12)
        assert optimal.margin < optimal.bounds.euclidean_margin
    # at small beta the game is still monotone in the Fisher metric, but SGN does not certify it
    weak = preference_game_example(beta=0.1)
    assert not weak.optimal.certified and weak.optimal.bounds.euclidean_margin > 0


def test_preference_game_objective():
    game = preference_game(beta=0.3, reference=[0.5, 0.25, 0.25])
    theta = np.random.default_rng(0).normal(size=6)
    pi1, pi2 = _policies(game, theta)
    p = np.array([[0.5, 0.0, 1.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.5]])
    mu = np.array([0.5, 0.25, 0.25])
    kl = [np.sum(pi[0] * np.log(pi[0] / mu)) for pi in (pi1, pi2)]
    expected = [pi1[0] @ p @ pi2[0] - 0.3 * kl[0], pi2[0] @ p @ pi1[0] - 0.3 * kl[1]]
    np.testing.assert_allclose(game.value(theta), expected, atol=1e-14)


def _game_kwargs(**changes):
    kwargs = dict(
        transitions=np.full((2, 2, 2, 2), 0.5), rewards=np.zeros((2, 2, 2, 2)), gamma=0.9, rho=[1.0, 0.0], tau=1.0
    )
    kwargs.update(changes)
    return kwargs


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"transitions": np.full((2, 2, 2, 2), 0.4)}, "transitions: every row"),
        ({"transitions": np.full((2, 2, 2, 3), 1 / 3)}, "transitions: expected shape"),
        ({"transitions": np.full((2, 1, 2, 2), 0.5)}, "transitions: each player"),
        ({"rewards": np.zeros((2, 2, 2))}, "rewards"),
        ({"gamma": 1.0}, "gamma"),
        ({"gamma": -0.1}, "gamma"),
        ({"tau": 0.0}, "tau"),
        ({"tau": -1.0}, "tau"),
        ({"rho": [0.5, 0.6]}, "rho"),
        ({"rho": [1.0]}, "rho"),
        ({"regularisation": "occupancy"}, "regularisation"),
    ],
)
def test_bad_game_inputs_name_the_argument(changes, match):
    with pytest.raises(ValueError, match=match):
        TabularMarkovGame(**_game_kwargs(**changes))


def test_bad_call_inputs_name_the_argument(cooperative):
    game, theta_star, certificate = cooperative
    with pytest.raises(ValueError, match="theta"):
        game.value(np.zeros(5))
    with pytest.raises(ValueError, match="theta_star"):
        fisher_bounds(game, np.zeros(3))
    with pytest.raises(ValueError, match="radius"):
        fisher_bounds(game, theta_star, radius=-1.0)
    with pytest.raises(ValueError, match="step"):
        natural_policy_gradient(game, theta_star, step=0.0, n_steps=10, theta_star=theta_star)
    with pytest.raises(ValueError, match="weights"):
        natural_policy_gradient(game, theta_star, step=0.1, n_steps=10, theta_star=theta_star, weights=(1.0, -1.0))
    with pytest.raises(ValueError, match="timescales"):
        euler_factor(certificate.bounds, [1, 1], 0.1, timescales=[1, 2, 3])
    with pytest.raises(ValueError, match="preferences"):
        preference_game(np.array([[0.5, 0.7], [0.7, 0.5]]))
    with pytest.raises(ValueError, match="reference"):
        preference_game(reference=[0.5, 0.5])
    with pytest.raises(TypeError, match="game"):
        nash_equilibrium("not a game")
