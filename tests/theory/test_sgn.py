"""SGN certificates against closed forms, the small-gain criterion, and simulated contraction."""

import numpy as np
import pytest

from theory.sgn import (
    Ball,
    Box,
    DifferentiableGame,
    QuadraticGame,
    certify,
    estimate_bounds,
    margin,
    optimise_weights,
    perron_weights,
    small_gain_radius,
    timescale_band,
    two_player_optimum,
)
from theory.sgn.dynamics import contraction_factors, simulate, weighted_norm
from theory.sgn.examples import (
    asymmetric_toy,
    certification_rates,
    lq_closed_form,
    lq_game,
    random_quadratic_game,
)

COUPLINGS = np.linspace(0.0, 1.4, 15)  # certified up to 1/sqrt(ab) = 1.414...


@pytest.mark.parametrize("coupling", COUPLINGS)
def test_lq_game_reproduces_the_closed_forms(coupling):
    certificate = certify(lq_game(coupling))
    expected = lq_closed_form(coupling)
    assert certificate.certified and certificate.bounds.exact
    assert certificate.margin == pytest.approx(expected.margin, abs=1e-9)
    assert certificate.lipschitz == pytest.approx(expected.lipschitz, abs=1e-9)
    assert certificate.euler_step_bound == pytest.approx(expected.euler_step_bound, abs=1e-9)
    assert certificate.euclidean_margin == pytest.approx(expected.euclidean_margin, abs=1e-9)
    assert certificate.euclidean_certified == (expected.euclidean_margin > 0)
    if coupling > 0:
        assert certificate.weights[1] == pytest.approx(10 / 0.05, rel=1e-12)  # w2/w1 = L12/L21 = a/b


def test_lq_certificate_is_tight_the_true_rate_equals_the_margin():
    game, expected = lq_game(1.0), lq_closed_form(1.0)
    certificate = certify(game)
    scale = np.sqrt(np.repeat(certificate.weights, game.blocks))
    weighted = scale[:, None] * game.H / scale[None, :]
    true_margin = np.linalg.eigvalsh(0.5 * (weighted + weighted.T))[0]
    assert true_margin == pytest.approx(certificate.margin, abs=1e-9) == pytest.approx(expected.margin, abs=1e-9)


def test_the_asymmetric_toy_is_certified_where_euclidean_monotonicity_fails():
    certificate = certify(asymmetric_toy())
    assert certificate.euclidean_margin == pytest.approx(1 - 10.05 / 2) and not certificate.euclidean_certified
    assert certificate.certified and certificate.margin == pytest.approx(1 - np.sqrt(0.5), abs=1e-12)
    np.testing.assert_allclose(certificate.weights, [1.0, 200.0])
    low, high = certificate.band
    assert low < 200 < high
    for edge in (low, high):  # the margin vanishes exactly at the band's edges
        assert margin([1, 1], [[0, 10], [0.05, 0]], [1.0, edge]) == pytest.approx(0.0, abs=1e-9)
    toy_bounds = ([1, 1], [[0, 10], [0.05, 0]])
    assert margin(*toy_bounds, [1.0, 0.9 * low]) < 0 < margin(*toy_bounds, [1.0, 1.1 * low])


def test_two_player_optimal_weights_equal_the_closed_form():
    rng = np.random.default_rng(0)
    for _ in range(40):
        mu = rng.uniform(0.5, 3.0, 2)
        coupling = np.array([[0.0, rng.uniform(0.01, 2)], [rng.uniform(0.01, 2), 0.0]])
        ratio, alpha = two_player_optimum(mu, coupling)
        assert ratio == pytest.approx(coupling[0, 1] / coupling[1, 0], rel=1e-12)
        assert margin(mu, coupling, [1.0, ratio]) == pytest.approx(alpha, abs=1e-12)
        numerical = optimise_weights(mu, coupling, method="numerical")
        assert margin(mu, coupling, numerical) == pytest.approx(alpha, abs=1e-9)
        for other in np.geomspace(ratio / 100, ratio * 100, 9):
            assert margin(mu, coupling, [1.0, other]) <= alpha + 1e-12
        band = timescale_band(mu, coupling, alpha=0.0)
        assert (band is not None) == (alpha > 0)


@pytest.mark.parametrize("n_players", [3, 5, 10])
def test_n_player_certifiable_iff_small_gain_radius_below_one(n_players):
    agreements, certified_count = 0, 0
    for seed in range(30):
        coupling = np.random.default_rng(seed).uniform(0.05, 1.5) / (n_players - 1)
        game = random_quadratic_game(n_players, 2, coupling, seed=seed)
        bounds = estimate_bounds(game)
        rho = small_gain_radius(bounds.mu, bounds.coupling)
        certificate = certify(game, bounds=bounds)
        agreements += certificate.certified == (rho < 1)
        certified_count += certificate.certified
        perron = perron_weights(bounds.mu, bounds.coupling)
        assert (perron is not None) == (rho < 1)
        if perron is not None:
            assert margin(bounds.mu, bounds.coupling, perron) > 0  # Perron weights certify
            assert certificate.margin >= margin(bounds.mu, bounds.coupling, perron) - 1e-12
    assert agreements == 30
    assert 0 < certified_count < 30  # the ensemble has both kinds


def test_a_non_certifiable_game_is_reported_not_forced():
    certificate = certify(lq_game(2.0))
    assert not certificate.certified and certificate.margin == pytest.approx(lq_closed_form(2.0).margin, abs=1e-9)
    # two players: rho(Gamma) = sqrt(L12 L21 / (mu1 mu2)) = coupling sqrt(ab)
    assert certificate.spectral_radius == pytest.approx(2.0 * np.sqrt(0.5), rel=1e-9) and "rho" in certificate.message
    assert certificate.euler_step_bound == 0.0 and certificate.band is None
    with pytest.raises(ValueError, match="no Perron weights"):
        optimise_weights(certificate.bounds.mu, certificate.bounds.coupling, method="perron")
    fixed = certify(asymmetric_toy(), weights=[1.0, 1.0])
    assert not fixed.certified and "optimised weights would certify" in fixed.message


@pytest.mark.parametrize("coupling", [0.0, 0.5, 1.0, 1.3])
def test_simulated_euler_contraction_is_never_worse_than_certified(coupling):
    game = lq_game(coupling)
    certificate = certify(game)
    rng = np.random.default_rng(1)
    region = Box.around(np.zeros(game.dim), 1.0)
    for step in (certificate.euler_step, 0.99 * certificate.euler_step_bound):
        x0, y0 = rng.uniform(-1, 1, (2, game.dim))
        ratios = contraction_factors(game, x0, y0, certificate.weights, step=step, n_steps=300, region=region)
        assert np.nanmax(ratios) <= certificate.euler_factor(step) + 1e-12
        assert certificate.euler_factor(step) < 1


def test_euler_above_the_true_threshold_diverges_and_rk4_contracts_at_its_guideline():
    game, expected = lq_game(1.0), lq_closed_form(1.0)
    certificate = certify(game)
    x0, y0 = np.random.default_rng(2).standard_normal((2, game.dim))
    unstable = contraction_factors(game, x0, y0, certificate.weights, step=1.05 * expected.euler_threshold, n_steps=400)
    assert np.nanmax(unstable) > 1 and certificate.euler_factor(1.05 * expected.euler_threshold) > 1
    stable = contraction_factors(game, x0, y0, certificate.weights, step=0.95 * expected.euler_threshold, n_steps=400)
    assert np.nanmax(stable) < 1  # the certified bound is conservative: the true threshold is 2 / (1 + s)
    rk4 = contraction_factors(
        game, x0, y0, certificate.weights, step=certificate.rk4_step_guideline, n_steps=200, method="rk4"
    )
    assert np.nanmax(rk4) < 1  # the 2.5 / beta guideline is a heuristic; on this game it contracts


def test_the_toy_flow_leaves_the_euclidean_ball_but_not_the_sgn_ellipse():
    game, certificate = asymmetric_toy(), certify(asymmetric_toy())
    states = simulate(game, [0.15, -0.15], step=5e-4, n_steps=3000)
    euclidean = np.linalg.norm(states, axis=1)
    weighted = weighted_norm(states, certificate.weights, game.blocks)
    assert euclidean.max() > 1.5 * euclidean[0]
    assert np.all(np.diff(weighted) <= 1e-15)


def test_sampled_bounds_for_a_nonlinear_game():
    H = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0], [0.1, 0.3, 1.5]])
    eps = 0.2

    def field(x):
        return H @ x + eps * np.tanh(x)  # costs f_i + eps log cosh(x_i): curvature grows by eps sech^2

    game = DifferentiableGame(field, [2, 1])
    assert game.jacobian(np.zeros(3)) == pytest.approx(H + eps * np.eye(3), abs=1e-8)
    region = Box.around(np.zeros(3), 2.0)
    bounds = estimate_bounds(game, region, n_samples=400, safety_margin=0.05, seed=0)
    exact = estimate_bounds(QuadraticGame(H, [2, 1]))
    assert not bounds.exact and "not a proof" in bounds.describe()
    # the true inf of the curvature lies in [mu_H, mu_H + eps sech^2(2)]; sampled bounds are shrunk below it
    assert np.all(bounds.mu <= exact.mu + eps / np.cosh(2.0) ** 2)
    np.testing.assert_allclose(bounds.coupling, 1.05 * exact.coupling, rtol=1e-6)
    certificate = certify(game, region)
    assert certificate.certified and "sampled bounds" in certificate.message
    ball = Ball(np.zeros(3), 1.0)
    assert np.linalg.norm(ball.project(np.array([3.0, 4.0, 0.0]))) == pytest.approx(1.0)


def test_certification_rate_sgn_dominates_euclidean():
    euclidean, sgn = certification_rates([0.0, 0.5, 1.0, 2.0], n_seeds=10)
    assert np.all(sgn >= euclidean)
    assert euclidean[0] == sgn[0] == 1.0 and euclidean[2] == 0.0 and sgn[2] == 1.0 and sgn[3] == 0.0


def test_bad_inputs_raise_naming_the_argument():
    with pytest.raises(ValueError, match="weights"):
        margin([1, 1], [[0, 1], [1, 0]], [1.0, -1.0])
    with pytest.raises(ValueError, match="coupling"):
        margin([1, 1], [[0, -1], [1, 0]], [1.0, 1.0])
    with pytest.raises(ValueError, match="mu"):
        small_gain_radius([1.0], [[0.0]])
    with pytest.raises(TypeError, match="game"):
        estimate_bounds("not a game")
    with pytest.raises(ValueError, match="region"):
        estimate_bounds(DifferentiableGame(lambda x: x, [1, 1]))
    with pytest.raises(ValueError, match="blocks"):
        QuadraticGame(np.eye(3), [1, 1])
    with pytest.raises(ValueError, match="blocks"):
        DifferentiableGame(lambda x: x, [2])
    with pytest.raises(ValueError, match="step"):
        simulate(asymmetric_toy(), [0, 0], step=0.0, n_steps=3)
    with pytest.raises(ValueError, match="method"):
        simulate(asymmetric_toy(), [0, 0], step=0.1, n_steps=3, method="leapfrog")
    with pytest.raises(ValueError, match="x0"):
        simulate(asymmetric_toy(), [0, 0, 0], step=0.1, n_steps=3)
    with pytest.raises(ValueError, match="upper"):
        Box([0.0, 1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="method"):
        optimise_weights([1, 1], [[0, 1], [1, 0]], method="magic")
