"""Tests for theory.alignment: tilted (KL-regularised) optimum, best-of-n, and their reward-KL curves."""

import itertools

import cvxpy as cp
import numpy as np
import pytest

from theory.alignment import (
    BetaForKLResult,
    MonteCarloEstimate,
    TiltMatchingKL,
    best_of_n_curve,
    best_of_n_distribution,
    best_of_n_kl_bound,
    frontier_reward,
    kl_divergence,
    monte_carlo_best_of_n,
    monte_carlo_tilted,
    population_best_of_n_curve,
    population_tilted_curve,
    solve_beta_for_kl,
    tilted_curve,
    tilted_distribution,
)


def random_instance(seed: int, size: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A generic base distribution with distinct Gaussian rewards."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(size)), rng.normal(size=size)


# --------------------------------------------------------------------------- KL and the tilted distribution


def test_kl_divergence_values():
    p = np.array([0.5, 0.25, 0.25, 0.0])
    q = np.array([0.0, 0.5, 0.5, 0.0])
    assert kl_divergence(q, p) == pytest.approx(np.log(2.0), abs=1e-15)  # 0 log 0 terms vanish
    assert kl_divergence(p, p) == 0.0
    assert kl_divergence(np.array([0.5, 0.0, 0.0, 0.5]), p) == np.inf


@pytest.mark.parametrize("beta", [0.3, 2.0])
def test_tilted_distribution_matches_convex_program(beta):
    p, r = random_instance(0, size=8)
    q = cp.Variable(p.size)
    objective = cp.Maximize(q @ r - beta * cp.sum(cp.rel_entr(q, p)))
    problem = cp.Problem(objective, [q >= 0, cp.sum(q) == 1])
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, tol_ktratio=1e-10)
    assert problem.status == cp.OPTIMAL
    np.testing.assert_allclose(tilted_distribution(p, r, beta), q.value, atol=1e-6)


def test_tilted_curve_matches_direct_computation_and_limits():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(12))
    r = rng.permutation(12).astype(float)  # distinct levels one apart: the tiny-beta limit is exact
    betas = np.array([1e-3, 0.1, 0.7, 3.0, 1e3])
    curve = tilted_curve(p, r, betas)
    for beta, kl, reward in zip(betas, curve.kl, curve.reward, strict=True):
        phi = tilted_distribution(p, r, beta)
        assert kl == pytest.approx(kl_divergence(phi, p), rel=1e-9, abs=1e-15)
        assert reward == pytest.approx(phi @ r, rel=1e-12)
    assert curve.kl[0] == pytest.approx(-np.log(p[r.argmax()]), rel=1e-12)
    assert curve.reward[0] == pytest.approx(r.max(), rel=1e-12)
    variance = p @ (r - p @ r) ** 2
    assert curve.kl[-1] == pytest.approx(variance / (2 * betas[-1] ** 2), rel=1e-2)  # small-KL expansion
    assert np.all(np.diff(curve.kl) < 0) and np.all(np.diff(curve.reward) < 0)


@pytest.mark.filterwarnings("error")
def test_tilted_handles_zero_mass_and_extreme_scales():
    p = np.array([0.2, 0.0, 0.3, 0.5])
    r = np.array([1e3, 5e3, 4e3, 0.0])  # the best reward sits where p = 0
    np.testing.assert_array_equal(tilted_distribution(p, r, 1e-300), [0.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(tilted_distribution(p, r, 1e300), p, rtol=1e-12)
    curve = tilted_curve(p, r, [1e-300, 1e300])
    np.testing.assert_allclose(curve.kl, [-np.log(0.3), 0.0], atol=1e-12)
    np.testing.assert_allclose(curve.reward, [4e3, p @ r], rtol=1e-12)
    huge = tilted_distribution(p, np.array([1e300, -1e300, 2e300, 0.0]), 1e-10)
    np.testing.assert_array_equal(huge, [0.0, 0.0, 1.0, 0.0])


# --------------------------------------------------------------------------- best-of-n


def brute_force_best_of_n(p: np.ndarray, r: np.ndarray, n: int) -> np.ndarray:
    """Enumerate all n-tuples; the best draw is picked uniformly among the positions holding the max reward."""
    q = np.zeros_like(p)
    for draws in itertools.product(range(p.size), repeat=n):
        best = max(r[y] for y in draws)
        winners = [y for y in draws if r[y] == best]
        for y in winners:
            q[y] += np.prod(p[list(draws)]) / len(winners)
    return q


def test_best_of_n_matches_brute_force_with_ties():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    r = np.array([2.0, 1.0, 2.0, 0.5])  # outputs 0 and 2 tie at the top
    for n in (1, 2, 3):
        np.testing.assert_allclose(best_of_n_distribution(p, r, n), brute_force_best_of_n(p, r, n), rtol=0, atol=1e-12)
    np.testing.assert_allclose(best_of_n_distribution(p, r, 1), p, rtol=0, atol=1e-15)


def test_best_of_n_curve_matches_distribution():
    p, r = random_instance(2)
    p[3] = 0.0
    p /= p.sum()
    ns = np.array([1, 2, 5, 17])
    curve = best_of_n_curve(p, r, ns)
    for n, kl, reward in zip(ns, curve.kl, curve.reward, strict=True):
        q = best_of_n_distribution(p, r, n)
        assert q[3] == 0.0 and q.sum() == pytest.approx(1.0, abs=1e-14)
        assert kl == pytest.approx(kl_divergence(q, p), rel=1e-10, abs=1e-14)
        assert reward == pytest.approx(q @ r, rel=1e-12)


def test_best_of_n_near_cdf_one_keeps_digits():
    """A tiny top level above a huge mass: F(v) and F(v-) agree to 12 digits, q(top) = 1 - (1 - eps)^n."""
    eps = 1e-12
    p = np.array([1.0 - eps, eps])
    q = best_of_n_distribution(p, np.array([0.0, 1.0]), 1000)
    assert q[1] == pytest.approx(-np.expm1(1000 * np.log1p(-eps)), rel=1e-12)


def test_best_of_n_kl_uniform_bound_and_tightness():
    ns = np.arange(1, 33)
    kl = best_of_n_curve(np.full(50, 1 / 50), np.arange(50.0), ns).kl
    assert np.all(kl <= best_of_n_kl_bound(ns) + 1e-12)
    assert best_of_n_kl_bound(1) == 0.0
    assert best_of_n_kl_bound(4) == pytest.approx(np.log(4) - 0.75, rel=1e-15)
    size = 100_000
    kl_large = best_of_n_curve(np.full(size, 1 / size), np.arange(float(size)), [4]).kl[0]
    assert 0 <= best_of_n_kl_bound(4) - kl_large < 1e-3


def test_best_of_n_kl_bound_holds_for_random_instances():
    rng = np.random.default_rng(3)
    ns = np.array([1, 2, 3, 5, 8, 16, 64, 1000])
    for _ in range(30):
        size = int(rng.integers(2, 40))
        p = rng.dirichlet(np.full(size, rng.uniform(0.1, 3.0)))
        curve = best_of_n_curve(p, rng.normal(size=size), ns)
        assert np.all(curve.kl <= best_of_n_kl_bound(ns) + 1e-12)


# --------------------------------------------------------------------------- tilted vs best-of-n


def test_tilted_dominates_best_of_n_at_equal_kl():
    p, r = random_instance(4)
    curve = best_of_n_curve(p, r, [2, 4, 8, 16])
    gaps = []
    for kl, reward in zip(curve.kl, curve.reward, strict=True):
        result = solve_beta_for_kl(p, r, kl)
        assert result.converged
        assert result.reward >= reward - 1e-9
        gaps.append(result.reward - reward)
    assert max(gaps) > 1e-4  # strict for a generic instance


@pytest.mark.parametrize("n", [2, 5, 20])
def test_binary_reward_best_of_n_is_tilted(n):
    p = np.random.default_rng(5).dirichlet(np.ones(6))
    r = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    p_correct = p[r == 1].sum()
    s = 1 - (1 - p_correct) ** n
    beta = 1 / np.log(s * (1 - p_correct) / ((1 - s) * p_correct))
    phi = tilted_distribution(p, r, beta)
    tilt = np.exp(1 / beta)
    assert phi[r == 1].sum() == pytest.approx(p_correct * tilt / (1 - p_correct + p_correct * tilt), rel=1e-12)
    np.testing.assert_allclose(best_of_n_distribution(p, r, n), phi, rtol=0, atol=1e-12)
    kl = s * np.log(s / p_correct) + (1 - s) * np.log((1 - s) / (1 - p_correct))
    assert best_of_n_curve(p, r, [n]).kl[0] == pytest.approx(kl, rel=1e-10)
    # beta is ill-conditioned near KL_max (KL flattens as beta -> 0), but dE[r]/dKL = beta keeps the reward exact.
    assert solve_beta_for_kl(p, r, kl).reward == pytest.approx(phi @ r, abs=1e-9)


# --------------------------------------------------------------------------- a population of prompts


def binary_population(seed: int, n_prompts: int = 12) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Prompts of different difficulty: a Dirichlet base over 3-9 answers, a random subset of them correct."""
    rng = np.random.default_rng(seed)
    ps, rs = [], []
    for _ in range(n_prompts):
        size = int(rng.integers(3, 10))
        ps.append(rng.dirichlet(np.full(size, 0.5)))
        rs.append((rng.random(size) < rng.uniform(0.05, 0.6)).astype(float))
    return ps, rs


def test_population_frontier_is_the_convex_programs_optimum_at_its_mean_kl():
    ps, rs = binary_population(0, n_prompts=5)
    frontier = population_tilted_curve(ps, rs, [0.3])
    qs = [cp.Variable(p.size) for p in ps]
    budget = frontier.kl[0] * len(ps)
    problem = cp.Problem(
        cp.Maximize(sum(q @ r for q, r in zip(qs, rs, strict=True))),
        [cp.sum(sum(cp.sum(cp.rel_entr(q, p)) for q, p in zip(qs, ps, strict=True))) <= budget]
        + [constraint for q in qs for constraint in (q >= 0, cp.sum(q) == 1)],
    )
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    assert problem.status == cp.OPTIMAL
    assert problem.value / len(ps) == pytest.approx(frontier.reward[0], abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_common_n_best_of_n_is_never_above_the_common_beta_frontier(seed):
    # Lagrangian form, exact and free of interpolation: for every beta the tilted family maximises
    # mean reward - beta mean KL, so every best-of-n point satisfies R_n - beta K_n <= R(beta) - beta K(beta).
    ps, rs = binary_population(seed)
    betas = np.geomspace(1e-3, 1e3, 61)
    frontier = population_tilted_curve(ps, rs, betas)
    best_of_n = population_best_of_n_curve(ps, rs, 2 ** np.arange(10))
    lagrangian_frontier = frontier.reward - betas * frontier.kl
    lagrangian_best_of_n = best_of_n.reward[:, None] - betas[None, :] * best_of_n.kl[:, None]
    assert np.all(lagrangian_best_of_n <= lagrangian_frontier[None, :] + 1e-12)
    # read at best-of-n's own mean KL on a fine grid, the frontier is strictly higher for moderate n; both end at
    # the base (n = 1) and at the base conditioned on success (n -> infinity, beta -> 0), where the gap closes
    fine = population_tilted_curve(ps, rs, np.geomspace(1e-3, 1e3, 2001))
    gaps = frontier_reward(fine, best_of_n.kl) - best_of_n.reward
    assert np.all(gaps[1:5] > 1e-4) and np.all(gaps >= -1e-12) and abs(best_of_n.kl[0]) < 1e-12
    # each prompt alone: binary best-of-n is tilted, so its own curve has no gap (the population is what loses)
    single = population_tilted_curve(ps[:1], rs[:1], np.geomspace(1e-3, 1e3, 2001))
    alone = population_best_of_n_curve(ps[:1], rs[:1], [4])
    assert frontier_reward(single, alone.kl)[0] == pytest.approx(alone.reward[0], abs=1e-6)


def test_population_curves_average_the_prompts_and_validate_them():
    ps, rs = binary_population(3, n_prompts=3)
    curve = population_best_of_n_curve(ps, rs, [1, 8])
    singles = [best_of_n_curve(p, r, [1, 8]) for p, r in zip(ps, rs, strict=True)]
    np.testing.assert_allclose(curve.reward, np.mean([c.reward for c in singles], axis=0), rtol=1e-15)
    np.testing.assert_allclose(curve.reward[0], np.mean([p @ r for p, r in zip(ps, rs, strict=True)]))
    np.testing.assert_allclose(frontier_reward(curve, curve.kl), curve.reward)
    with pytest.raises(ValueError, match="^ps, rs: expected the same"):
        population_tilted_curve(ps, rs[:2], [1.0])
    with pytest.raises(ValueError, match=r"^ps\[1\]: expected a probability vector"):
        population_tilted_curve([ps[0], ps[1] * 2], rs[:2], [1.0])


# --------------------------------------------------------------------------- solving for beta


@pytest.mark.parametrize("fraction", [0.0, 1e-6, 0.3, 0.9, 0.999])
def test_solve_beta_for_kl_converges(fraction):
    p, r = random_instance(6)
    kl_max = -np.log(p[r.argmax()])
    tol = 1e-10
    result = solve_beta_for_kl(p, r, fraction * kl_max, tol=tol)
    assert isinstance(result, BetaForKLResult)
    assert result.converged and "converged" in result.message
    assert abs(result.kl - fraction * kl_max) <= tol * max(1.0, fraction * kl_max)
    curve = tilted_curve(p, r, [result.beta])
    assert result.kl == pytest.approx(curve.kl[0], rel=1e-12, abs=1e-15)
    assert result.reward == pytest.approx(curve.reward[0], rel=1e-12)
    assert set(result.history) == {"beta", "kl", "residual", "seconds"}
    assert all(len(column) == result.n_iter for column in result.history.values())
    assert result.history["residual"][-1] == pytest.approx(abs(result.kl - fraction * kl_max), abs=1e-15)


def test_kl_derivative_matches_finite_differences():
    p, r = random_instance(7)
    solver = TiltMatchingKL(p, r, 0.4)
    for _ in range(3):
        solver.step()
        beta, h = solver.beta, 1e-5 * solver.beta
        kl_plus, kl_minus = tilted_curve(p, r, [beta + h, beta - h]).kl
        assert solver.kl_derivative < 0
        assert solver.kl_derivative == pytest.approx((kl_plus - kl_minus) / (2 * h), rel=1e-6)
        low, high = solver.bracket
        assert low <= beta <= high


def test_solve_beta_for_kl_callback_stops():
    p, r = random_instance(8)
    seen = []

    def stop_at_once(state):
        seen.append(state.metrics)
        return True

    result = solve_beta_for_kl(p, r, 0.999 * -np.log(p[r.argmax()]), callback=stop_at_once)
    assert not result.converged and "stopped" in result.message
    assert result.n_iter == 1 and len(seen) == 1 and set(seen[0]) == {"beta", "kl", "residual"}
    assert all(len(column) == 1 for column in result.history.values())


def test_solve_beta_for_kl_reports_max_iter():
    p, r = random_instance(8)
    result = solve_beta_for_kl(p, r, 0.999 * -np.log(p[r.argmax()]), max_iter=2)
    assert not result.converged and "max_iter" in result.message and result.n_iter == 2


def test_solve_beta_for_kl_rejects_unreachable_targets():
    p = np.array([0.5, 0.0, 0.5])
    r = np.array([0.0, 10.0, 1.0])  # the reward at p = 0 is unreachable: KL_max = log 2
    with pytest.raises(ValueError, match=r"kl_target:.*largest achievable KL.*0\.693147"):
        solve_beta_for_kl(p, r, np.log(2.0))
    with pytest.raises(ValueError, match="kl_target:"):
        solve_beta_for_kl(p, r, -0.1)
    with pytest.raises(ValueError, match="r:.*distinct"):
        solve_beta_for_kl(p, np.array([1.0, 5.0, 1.0]), 0.1)
    assert solve_beta_for_kl(p, r, 0.99 * np.log(2.0)).converged


# --------------------------------------------------------------------------- Monte Carlo


def test_monte_carlo_estimates_agree_with_exact_values():
    p, r = random_instance(9)
    tilted = tilted_curve(p, r, [0.5])
    estimate = monte_carlo_tilted(p, r, 0.5, 200_000, np.random.default_rng(10))
    assert isinstance(estimate, MonteCarloEstimate) and estimate.n_samples == 200_000
    assert abs(estimate.reward - tilted.reward[0]) <= 4 * estimate.reward_stderr
    assert abs(estimate.kl - tilted.kl[0]) <= 0.02
    phi = tilted_distribution(p, r, 0.5)  # delta method: Var = E_p[(phi / p)^2 (r - E_phi r)^2] / N
    asymptotic_stderr = np.sqrt(np.sum(phi**2 / p * (r - tilted.reward[0]) ** 2) / 200_000)
    assert estimate.reward_stderr == pytest.approx(asymptotic_stderr, rel=0.05)

    best = best_of_n_curve(p, r, [4])
    estimate = monte_carlo_best_of_n(p, r, 4, 200_001, np.random.default_rng(11))
    assert estimate.n_samples == 200_000
    assert abs(estimate.reward - best.reward[0]) <= 4 * estimate.reward_stderr
    assert abs(estimate.kl - best.kl[0]) <= 0.02
    q = best_of_n_distribution(p, r, 4)
    assert estimate.reward_stderr == pytest.approx(np.sqrt(q @ (r - q @ r) ** 2 / 50_000), rel=0.02)


def test_monte_carlo_best_of_n_breaks_ties_uniformly():
    p = np.array([0.25, 0.25, 0.5])
    r = np.array([1.0, 1.0, 0.0])
    estimate = monte_carlo_best_of_n(p, r, 2, 200_000, np.random.default_rng(12))
    # Always picking output 0 among the tied best would give KL(0.75, 0, 0.25 || p) = 0.65 instead of 0.13.
    assert estimate.kl == pytest.approx(kl_divergence(best_of_n_distribution(p, r, 2), p), abs=5e-3)


def test_monte_carlo_is_reproducible_and_needs_a_generator():
    p, r = random_instance(13)
    for estimator, parameter in ((monte_carlo_tilted, 0.5), (monte_carlo_best_of_n, 3)):
        first = estimator(p, r, parameter, 1000, np.random.default_rng(0))
        assert first == estimator(p, r, parameter, 1000, np.random.default_rng(0))
        assert first != estimator(p, r, parameter, 1000, np.random.default_rng(1))
        with pytest.raises(TypeError, match="rng:"):
            estimator(p, r, parameter, 1000, 0)
        with pytest.raises(TypeError, match="rng:"):
            estimator(p, r, parameter, 1000, np.random.RandomState(0))


# --------------------------------------------------------------------------- validation


P, R = np.array([0.5, 0.5]), np.array([0.0, 1.0])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: tilted_distribution([0.5, 0.43], R, 1.0), ValueError, r"p: expected a probability vector.*sum 0\.93"),
        (lambda: tilted_distribution([1.5, -0.5], R, 1.0), ValueError, "p:.*negative"),
        (lambda: tilted_distribution([[0.5, 0.5]], R, 1.0), ValueError, "p:.*1-D"),
        (lambda: tilted_distribution(["a", "b"], R, 1.0), TypeError, "p:"),
        (lambda: tilted_distribution(P, [0.0, 1.0, 2.0], 1.0), ValueError, r"r: expected shape \(2,\) matching p"),
        (lambda: tilted_distribution(P, [0.0, np.inf], 1.0), ValueError, "r:.*finite"),
        (lambda: tilted_distribution(P, R, -1.0), ValueError, "beta: expected a positive float"),
        (lambda: tilted_distribution(P, R, "1"), TypeError, "beta:"),
        (lambda: tilted_curve(P, R, [1.0, 0.0]), ValueError, "betas:"),
        (lambda: kl_divergence([1.0], P), ValueError, r"q: expected shape \(2,\) matching p, got \(1,\)"),
        (lambda: best_of_n_distribution(P, R, 0), ValueError, "n: expected an integer >= 1"),
        (lambda: best_of_n_distribution(P, R, 2.0), TypeError, "n: expected an integer >= 1"),
        (lambda: best_of_n_curve(P, R, [2, 0]), ValueError, "ns:"),
        (lambda: best_of_n_kl_bound(0), ValueError, "n:"),
        (lambda: solve_beta_for_kl(P, R, 0.1, tol=0.0), ValueError, "tol:"),
        (lambda: solve_beta_for_kl(P, R, "0.1"), TypeError, "kl_target:"),
        (lambda: monte_carlo_tilted(P, R, 1.0, 0, np.random.default_rng(0)), ValueError, "n_samples:"),
        (lambda: monte_carlo_best_of_n(P, R, 4, 7, np.random.default_rng(0)), ValueError, "n_samples:"),
    ],
)
def test_validation_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
