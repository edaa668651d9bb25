"""Optimistic OMD in the SEA model: closed-form environments, regret rates, the regret lemma, hand-computed MWU."""

import numpy as np
import pytest
from scipy.optimize import minimize

from theory.games.sea import (
    EuclideanBall,
    FollowTheRegularizedLeader,
    OnlineGradientDescent,
    OnlineMirrorDescent,
    OptimisticOMD,
    ProbabilitySimplex,
    SEALinearSimplexEnvironment,
    SEAQuadraticEnvironment,
    run_online,
)


def _learners(environment):
    domain, bound = environment.domain, environment.gradient_bound
    return [
        OptimisticOMD(domain, gradient_bound=bound),
        OnlineMirrorDescent(domain, gradient_bound=bound),
        OnlineGradientDescent(domain, gradient_bound=bound),
        FollowTheRegularizedLeader(domain, gradient_bound=bound),
    ]


def test_quadratic_environment_realises_its_closed_form_variances():
    environment = SEAQuadraticEnvironment(dim=3, radius=1.5, center=[0.4, -0.2, 0.1], noise=0.7, drift=0.3, period=4)
    T = 37
    means = environment.means(T)
    # Sigma^2 by brute force: the t = 1 supremum over the sphere (where it is attained), then the mean jumps.
    sphere = np.random.default_rng(0).standard_normal((200_000, 3))
    sphere *= 1.5 / np.linalg.norm(sphere, axis=1, keepdims=True)
    first = np.max(np.sum((sphere - means[0]) ** 2, axis=1))
    jumps = np.sum(np.diff(means, axis=0) ** 2)
    assert environment.variation_total(T) == pytest.approx(first + jumps, rel=1e-4)
    assert jumps == pytest.approx(9 * (2 * 0.3) ** 2)  # floor(36 / 4) switches of size 2 drift
    assert environment.sigma_sq_total(T) == pytest.approx(T * 3 * 0.7**2)
    # sigma_t^2 = E ||grad f_t - grad F_t||^2 = E ||xi_t||^2, checked on many draws.
    noise = environment.sample(20_000, seed=1).targets - environment.means(20_000)
    assert np.mean(np.sum(noise**2, axis=1)) == pytest.approx(3 * 0.7**2, rel=0.02)


def test_simplex_environment_noise_has_exact_dual_norm():
    environment = SEALinearSimplexEnvironment(dim=4, noise=0.5, drift=0.2, period=2)
    losses = environment.sample(50, seed=2)
    noise = losses.loss_vectors - environment.means(50)
    np.testing.assert_allclose(np.max(np.abs(noise), axis=1), 0.5)  # ||xi_t||_inf = sigma on every draw
    assert environment.sigma_sq_total(50) == pytest.approx(50 * 0.25)
    # g_1 = linspace(0, 1, 4) + drift (e_0 - e_3) = (0.2, 1/3, 2/3, 0.8); then 24 switches of size 2 drift.
    assert environment.variation_total(50) == pytest.approx(0.8**2 + 24 * 0.4**2)


@pytest.mark.parametrize("center", [[0.3, -0.2, 0.5], [2.0, 1.0, -0.5]])  # the mean target inside / outside the ball
def test_closed_form_comparator_equals_a_numerical_minimiser(center):
    environment = SEAQuadraticEnvironment(dim=3, radius=1.0, center=center, noise=0.8, drift=0.5, period=3)
    losses = environment.sample(60, seed=4)
    values, minimisers = losses.best_fixed()
    for t in (7, 60):
        targets = losses.targets[:t]

        def total(x, targets=targets):
            return 0.5 * np.sum((x - targets) ** 2)

        numerical = minimize(
            total,
            np.zeros(3),
            jac=lambda x, targets=targets: np.sum(x - targets, axis=0),
            constraints=[{"type": "ineq", "fun": lambda x: 1.0 - x @ x, "jac": lambda x: -2 * x}],
            method="SLSQP",
            options={"ftol": 1e-12, "maxiter": 500},
        )
        assert numerical.success
        np.testing.assert_allclose(minimisers[t - 1], numerical.x, atol=1e-6)
        assert values[t - 1] == pytest.approx(numerical.fun, rel=1e-10, abs=1e-9)
    learner = OptimisticOMD(environment.domain, gradient_bound=environment.gradient_bound)
    result = run_online(learner, environment, 60, seed=4)
    np.testing.assert_allclose(result.comparator, minimisers[-1])
    np.testing.assert_allclose(result.regret, np.cumsum(result.losses) - values)
    if np.linalg.norm(center) > 1:
        assert np.linalg.norm(result.comparator) == pytest.approx(1.0)  # the projection is active


def test_without_noise_or_drift_oomd_regret_is_constant_in_T():
    """sigma = 0, fixed c: Sigma^2_{1:T} = (R + ||c||)^2 for every T, so OOMD's regret is O(1).

    OGD tuned to the horizon (eta = D / (G sqrt T)) pays ~ sqrt(T). Anytime OGD (eta_t = D / (G sqrt t)) also has
    O(1) regret here: its steps sum to infinity, so on a fixed strongly convex quadratic it converges geometrically.
    """
    environment = SEAQuadraticEnvironment(dim=3, center=[0.5, 0.3, -0.2])
    domain, bound = environment.domain, environment.gradient_bound
    regrets = {}
    for T in (1000, 8000):
        assert environment.variation_total(T) == pytest.approx((1 + np.linalg.norm([0.5, 0.3, -0.2])) ** 2)
        for name, learner in [
            ("oomd", OptimisticOMD(domain, gradient_bound=bound)),
            ("ogd_anytime", OnlineGradientDescent(domain, gradient_bound=bound)),
            ("ogd_horizon", OnlineGradientDescent(domain, gradient_bound=bound, horizon=T)),
        ]:
            regrets[name, T] = run_online(learner, environment, T, seed=0).final_regret
    print({key: round(value, 4) for key, value in regrets.items()})
    assert 0 < regrets["oomd", 8000] < 1.0
    assert regrets["oomd", 8000] / regrets["oomd", 1000] < 1.001
    assert regrets["ogd_anytime", 8000] / regrets["ogd_anytime", 1000] < 1.001
    assert regrets["ogd_horizon", 8000] / regrets["ogd_horizon", 1000] == pytest.approx(np.sqrt(8), rel=0.05)


def test_oomd_regret_scales_with_sqrt_sigma_plus_sqrt_variation():
    """Across noise x (alternating) drift, regret ~ a + b (sqrt(sigma^2_{1:T}) + sqrt(Sigma^2_{1:T})).

    The paper's convex bound has this shape; the printed constant max regret / (sqrt sigma^2 + sqrt Sigma^2) is
    about 1.45 (with D = 2), attained in the purely adversarial corner, which shows the bound is tight there up to
    a constant.
    """
    rows = []
    for noise in (0.0, 0.5, 1.0, 2.0):
        for drift in (0.0, 0.2, 0.6):
            environment = SEAQuadraticEnvironment(dim=5, center=np.full(5, 0.2), noise=noise, drift=drift, period=1)
            learner = OptimisticOMD(environment.domain, gradient_bound=environment.gradient_bound)
            result = run_online(learner, environment, 2000, seed=1)
            rows.append((noise, drift, result.bound_scale, result.final_regret))
    noise, drift, scale, regret = np.array(rows).T
    design = np.column_stack([np.ones_like(scale), scale])
    coefficients = np.linalg.lstsq(design, regret, rcond=None)[0]
    r_squared = 1 - np.sum((regret - design @ coefficients) ** 2) / np.sum((regret - regret.mean()) ** 2)
    ratio = regret / scale
    print(f"line fit regret = {coefficients[0]:.2f} + {coefficients[1]:.3f} x scale, R^2 = {r_squared:.3f}")
    print(f"constant: max regret / (sqrt sigma^2 + sqrt Sigma^2) = {ratio.max():.3f}")
    assert r_squared > 0.9 and coefficients[1] > 0.3
    assert np.all(regret <= 2.0 * scale)  # the upper-bound shape with constant 2
    nontrivial = scale > 10
    assert np.all((ratio[nontrivial] > 0.5) & (ratio[nontrivial] < 2.0))
    adversarial = (noise == 0) & (drift > 0)
    assert np.all(ratio[adversarial] > 1.0)  # sigma = 0, alternating means: the bound is tight up to a constant
    # With sigma = 0 the regret is linear in the drift amplitude, i.e. in sqrt(Sigma^2) ~ 2 drift sqrt(T).
    pure = regret[adversarial]
    assert pure[1] / pure[0] == pytest.approx(3.0, rel=0.1)


@pytest.mark.parametrize("period", [1, 3])
def test_euclidean_regret_obeys_the_optimistic_omd_lemma_every_round(period):
    """Convex f_t, non-increasing steps: Regret_t <= D^2 / (2 eta_t) + sum_{s<=t} eta_s / 2 ||g_s - M_s||^2.

    lambda-strongly convex f_t: Regret_t <= sum_s eta_s / 2 ||g_s - M_s||^2 for OOMD with eta_s = 2 / (lambda s) and
    for OGD with eta_s = 1 / (lambda s) (here every f_t is 1-strongly convex).
    """
    environment = SEAQuadraticEnvironment(
        dim=4, radius=1.5, center=np.full(4, 0.3), noise=0.7, drift=0.4, period=period
    )
    domain, bound, diameter = environment.domain, environment.gradient_bound, environment.domain.diameter
    convex = [*_learners(environment), OnlineGradientDescent(domain, gradient_bound=bound, horizon=500)]
    for learner in convex:
        result = run_online(learner, environment, 500, seed=3)
        steps, errors = result.history["step_size"], result.history["hint_error_sq"]
        assert np.all(np.diff(steps) <= 0)
        assert np.all(result.regret <= diameter**2 / (2 * steps) + np.cumsum(steps * errors) / 2 + 1e-9)
    lam = environment.strong_convexity
    assert lam == 1.0
    strongly_convex = [
        OptimisticOMD(domain, gradient_bound=bound, strong_convexity=lam),
        OnlineGradientDescent(domain, gradient_bound=bound, strong_convexity=lam),
    ]
    for learner, factor in zip(strongly_convex, (2.0, 1.0), strict=True):
        result = run_online(learner, environment, 500, seed=3)
        steps, errors = result.history["step_size"], result.history["hint_error_sq"]
        np.testing.assert_allclose(steps, factor / np.arange(1, 501))
        assert np.all(result.regret <= np.cumsum(steps * errors) / 2 + 1e-9)
    # OOMD's hint error is ||g_t - g_{t-1}||^2 (optimism = last gradient); the baselines' is ||g_t||^2.
    oomd = run_online(OptimisticOMD(domain, gradient_bound=bound), environment, 50, seed=3)
    gradients = oomd.iterates - environment.sample(50, seed=3).targets
    np.testing.assert_allclose(oomd.history["hint_error_sq"][1:], np.sum(np.diff(gradients, axis=0) ** 2, axis=1))
    np.testing.assert_allclose(oomd.history["hint_error_sq"][0], np.sum(gradients[0] ** 2))


def test_entropic_oomd_matches_a_hand_computed_two_round_example():
    """d = 2, G = 1, delta = 1, D = sqrt(2 log 2); g_1 = (1, 0), g_2 = (0, 1).

    eta_1 = D / sqrt(5), x_1 = (1/2, 1/2); xhat_2 = (1, e^{eta_1}) / (1 + e^{eta_1}); Vbar_1 = 1, eta_2 = D / sqrt(6),
    M_2 = g_1 so x_2[0] = 1 / (1 + e^{eta_1 + eta_2}); Vbar_2 = 1 + ||g_2 - g_1||_inf^2 = 2, eta_3 = D / sqrt(7),
    xhat_3 proportional to (e^{-eta_1}, e^{-eta_2}), x_3[0] = 1 / (1 + e^{eta_1 - eta_2 - eta_3}).
    """
    learner = OptimisticOMD(ProbabilitySimplex(2), gradient_bound=1.0, delta=1.0)
    D = np.sqrt(2 * np.log(2))
    eta1, eta2, eta3 = D / np.sqrt(5), D / np.sqrt(6), D / np.sqrt(7)
    np.testing.assert_allclose(learner.predict(), [0.5, 0.5])
    assert learner.step_size == pytest.approx(eta1)
    learner.update([1.0, 0.0])
    np.testing.assert_allclose(learner.anchor[0], 1 / (1 + np.exp(eta1)))
    assert learner.step_size == pytest.approx(eta2) and learner.variation == pytest.approx(1.0)
    x2 = learner.predict()
    np.testing.assert_allclose(x2, [1 / (1 + np.exp(eta1 + eta2)), 1 / (1 + np.exp(-eta1 - eta2))])
    learner.update([0.0, 1.0])
    np.testing.assert_allclose(learner.anchor[0], 1 / (1 + np.exp(eta1 - eta2)))
    assert learner.step_size == pytest.approx(eta3) and learner.variation == pytest.approx(2.0)
    np.testing.assert_allclose(learner.predict()[0], 1 / (1 + np.exp(eta1 - eta2 - eta3)))
    # Plain OMD plays the anchor: x_2 = xhat_2, with the step D / sqrt(delta + 4G^2 + ||g_1||^2) as well.
    plain = OnlineMirrorDescent(ProbabilitySimplex(2), gradient_bound=1.0, delta=1.0)
    plain.update([1.0, 0.0])
    np.testing.assert_allclose(plain.predict()[0], 1 / (1 + np.exp(eta1)))


def test_entropic_oomd_on_a_constant_loss_is_optimistic_mwu_in_closed_form():
    """Constant l: x_1 uniform; for t >= 2, Vbar_{t-1} = ||l||_inf^2 and x_t ~ exp(-(eta_1 + ... + eta_t) l)."""
    environment = SEALinearSimplexEnvironment(dim=3, center=[0.2, 0.5, 0.9], noise=0.0, drift=0.0)
    learner = OptimisticOMD(environment.domain, gradient_bound=environment.gradient_bound)
    result = run_online(learner, environment, 40, seed=0)
    G, D = 0.9, np.sqrt(2 * np.log(3))
    steps = np.full(40, D / np.sqrt(1 + 4 * G**2 + 0.9**2))
    steps[0] = D / np.sqrt(1 + 4 * G**2)
    logits = -np.cumsum(steps)[:, None] * np.array([0.2, 0.5, 0.9])
    logits[0] = 0.0
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(result.iterates, expected / expected.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(result.comparator, [1.0, 0.0, 0.0])
    assert result.regret[-1] == pytest.approx(np.sum(result.losses) - 40 * 0.2)


def test_ftrl_on_a_constant_loss_is_hedge_on_the_cumulative_loss():
    """Constant l: x_t ~ exp(-eta_t (t - 1) l) with eta_t = D / (G sqrt t): the lazy step scales the whole sum."""
    environment = SEALinearSimplexEnvironment(dim=3, center=[0.2, 0.5, 0.9], noise=0.0, drift=0.0)
    learner = FollowTheRegularizedLeader(environment.domain, gradient_bound=environment.gradient_bound)
    result = run_online(learner, environment, 40, seed=0)
    t = np.arange(1, 41)
    logits = -(np.sqrt(2 * np.log(3)) / (0.9 * np.sqrt(t)) * (t - 1))[:, None] * np.array([0.2, 0.5, 0.9])
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(result.iterates, expected / expected.sum(axis=1, keepdims=True), rtol=1e-12)


def test_ftrl_on_the_ball_projects_the_scaled_gradient_sum():
    """x_{t+1} = P(-eta sum_{s<=t} (x_s - y_s)) for f_t = 1/2 ||x - y_t||^2, fixed-horizon eta = D / (G sqrt T)."""
    environment = SEAQuadraticEnvironment(dim=3, center=[0.9, -0.8, 0.5], noise=0.5, drift=0.4, period=3)
    T = 30
    learner = FollowTheRegularizedLeader(environment.domain, gradient_bound=environment.gradient_bound, horizon=T)
    result = run_online(learner, environment, T, seed=4)
    targets = environment.sample(T, seed=4).targets
    eta = 2.0 / (environment.gradient_bound * np.sqrt(T))
    x, total = np.zeros(3), np.zeros(3)
    for s in range(T):
        np.testing.assert_allclose(result.iterates[s], x, atol=1e-14)
        total += x - targets[s]
        x = -eta * total
        x /= max(1.0, np.linalg.norm(x))


def test_runs_are_seeded_and_a_callback_stops_them():
    environment = SEAQuadraticEnvironment(dim=2, noise=1.0, drift=0.3)
    learner = OnlineMirrorDescent(environment.domain, gradient_bound=environment.gradient_bound)
    first, second = run_online(learner, environment, 100, seed=7), run_online(learner, environment, 100, seed=7)
    np.testing.assert_array_equal(first.regret, second.regret)
    assert first.converged and first.n_iter == 100 and first.message == "played all 100 rounds"
    stopped = run_online(learner, environment, 100, seed=7, callback=lambda state: state.n_iter == 10)
    assert not stopped.converged and stopped.n_iter == 10 and stopped.regret.shape == (10,)
    np.testing.assert_allclose(stopped.cumulative_loss, first.cumulative_loss[:10])
    assert stopped.sigma_sq_total == pytest.approx(10 * 2 * 1.0**2)


def test_bad_inputs_raise_naming_the_argument():
    environment = SEAQuadraticEnvironment(dim=2)
    learner = OptimisticOMD(environment.domain, gradient_bound=1.0)
    with pytest.raises(ValueError, match="^T:"):
        run_online(learner, environment, 0)
    with pytest.raises(TypeError, match="^T:"):
        run_online(learner, environment, 2.5)
    with pytest.raises(ValueError, match="^noise:"):
        SEAQuadraticEnvironment(dim=2, noise=-0.1)
    with pytest.raises(ValueError, match="^radius:"):
        SEAQuadraticEnvironment(dim=2, radius=0.0)
    with pytest.raises(ValueError, match="^radius:"):
        EuclideanBall(2, -1.0)
    with pytest.raises(ValueError, match="^center:"):
        SEAQuadraticEnvironment(dim=2, center=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="^direction:"):
        SEAQuadraticEnvironment(dim=2, direction=[0.0, 0.0])
    with pytest.raises(ValueError, match="^period:"):
        SEALinearSimplexEnvironment(dim=3, period=0)
    with pytest.raises(ValueError, match="^dim:"):
        ProbabilitySimplex(1)
    with pytest.raises(ValueError, match="^gradient:"):
        learner.update(np.zeros(3))
    with pytest.raises(ValueError, match="^gradient:"):
        learner.update([np.nan, 0.0])
    with pytest.raises(ValueError, match="^gradient_bound:"):
        OptimisticOMD(environment.domain, gradient_bound=0.0)
    with pytest.raises(TypeError, match="^geometry:"):
        OnlineGradientDescent("ball", gradient_bound=1.0)
    with pytest.raises(ValueError, match="^horizon:"):
        OnlineGradientDescent(environment.domain, gradient_bound=1.0, horizon=10, strong_convexity=1.0)
    with pytest.raises(ValueError, match="^learner:"):
        run_online(OptimisticOMD(EuclideanBall(3), gradient_bound=1.0), environment, 5)
    with pytest.raises(TypeError, match="^environment:"):
        run_online(learner, "environment", 5)
