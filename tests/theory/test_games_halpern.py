"""Finite-sum VI solvers (EG, EAG, the paper's Alg. 1 and Alg. 2) against hand-solved games, an LP, exact
projections, the estimator's expectation, exact oracle counts and the O(1/k) Halpern rate."""

import math

import cvxpy as cp
import numpy as np
import pytest
from scipy.optimize import brentq, linprog, lsq_linear

from theory.games.halpern import (
    FiniteSumAffineProblem,
    FiniteSumMatrixGame,
    Halpern,
    PageHalpern,
    ProjectedExtragradient,
    VRHalpern,
    annotator_matrix_game,
    bilinear_quadratic_problem,
    epochs_to_tolerance,
    least_squares_problem,
    project_simplex,
    solve_extragradient,
    solve_halpern,
    solve_page_halpern,
    solve_vr_halpern,
)

RPS = np.array([[0.0, 1.0, -1.0], [-1.0, 0.0, 1.0], [1.0, -1.0, 0.0]])


def split_into_components(matrix, n_components, seed=0, noise=1.0):
    """Components A_i = A + E_i with sum_i E_i = 0, so their mean is exactly A."""
    perturbation = noise * np.random.default_rng(seed).standard_normal((n_components, *matrix.shape))
    return matrix + perturbation - perturbation.mean(axis=0)


def bisection_projection(v):
    """The simplex projection from its KKT condition alone: max(v - theta, 0) with sum = 1, theta by root finding."""
    theta = brentq(lambda t: np.maximum(v - t, 0).sum() - 1, v.min() - 1, v.max(), xtol=1e-15, rtol=1e-15)
    return np.maximum(v - theta, 0)


def lp_game_value(matrix):
    """min_x max_y x^T A y as the LP min t s.t. A^T x <= t 1, 1^T x = 1, x >= 0 (HiGHS)."""
    m, n = matrix.shape
    result = linprog(
        np.r_[np.zeros(m), 1.0],
        A_ub=np.c_[matrix.T, -np.ones(n)],
        b_ub=np.zeros(n),
        A_eq=np.r_[np.ones(m), 0.0][None],
        b_eq=[1.0],
        bounds=[(0, None)] * m + [(None, None)],
        method="highs",
    )
    assert result.status == 0
    return result.x[-1]


# --------------------------------------------------------------------------------------------- projection


@pytest.mark.parametrize("d", [1, 2, 5, 50])
def test_simplex_projection_equals_the_kkt_solution_and_lands_on_the_simplex(d):
    rng = np.random.default_rng(d)
    for scale in (0.1, 1.0, 10.0):
        v = scale * rng.standard_normal(d)
        p = project_simplex(v)
        np.testing.assert_allclose(p, bisection_projection(v), atol=1e-12)
        assert np.all(p >= 0) and abs(p.sum() - 1) <= 1e-13


def test_simplex_projection_equals_cvxpy_and_is_vectorised_along_any_axis():
    rng = np.random.default_rng(1)
    batch = 3 * rng.standard_normal((6, 7))
    for v in batch[:3]:
        z = cp.Variable(7)
        cp.Problem(cp.Minimize(cp.sum_squares(z - v)), [z >= 0, cp.sum(z) == 1]).solve(solver=cp.CLARABEL)
        np.testing.assert_allclose(project_simplex(v), z.value, atol=1e-7)
    rows = project_simplex(batch)
    np.testing.assert_allclose(rows, np.stack([bisection_projection(v) for v in batch]), atol=1e-12)
    np.testing.assert_allclose(project_simplex(batch.T, axis=0), rows.T, atol=0)
    on_simplex = rows[0]
    np.testing.assert_allclose(project_simplex(on_simplex), on_simplex, atol=1e-15)  # a fixed point


# --------------------------------------------------------------------------------------------- games with known answers


def run_every_method(problem, u0, tol=1e-6):
    """Every method that is guaranteed on a monotone game: EG, EAG and Alg. 2 (the Halpern ones restarted)."""
    return {
        "eg": solve_extragradient(problem, u0, tol=tol, max_iter=20_000),
        "eag": solve_halpern(problem, u0, restart=0.5, tol=tol, max_iter=20_000),
        "vr": solve_vr_halpern(problem, u0, restart=0.5, tol=tol, max_iter=20_000, seed=3),
    }


def test_every_method_solves_rock_paper_scissors():
    game = FiniteSumMatrixGame(split_into_components(RPS, 4))
    np.testing.assert_allclose(game.matrix, RPS, atol=1e-15)
    u0 = np.array([0.7, 0.2, 0.1, 0.1, 0.1, 0.8])
    for name, result in run_every_method(game, u0).items():
        assert result.converged and result.residual <= 1e-6, name
        np.testing.assert_allclose(result.u, np.full(6, 1 / 3), atol=1e-5, err_msg=name)
        assert abs(game.value(result.u)) <= 1e-6 and 0 <= result.gap <= 1e-5, name


def test_every_method_solves_a_two_by_two_game_solved_by_hand():
    # x = (p, 1-p) equalises x^T A = (5p - 2, 1 - 2p): p = 3/7; A y = (4q - 1, 1 - 3q): q = 2/7; value 1/7.
    matrix = np.array([[3.0, -1.0], [-2.0, 1.0]])
    game = FiniteSumMatrixGame(split_into_components(matrix, 3, seed=1))
    for name, result in run_every_method(game, np.array([1.0, 0.0, 0.0, 1.0])).items():
        x, y = game.split(result.u)
        assert result.converged, name
        np.testing.assert_allclose(x, [3 / 7, 4 / 7], atol=1e-5, err_msg=name)
        np.testing.assert_allclose(y, [2 / 7, 5 / 7], atol=1e-5, err_msg=name)
        assert game.value(result.u) == pytest.approx(1 / 7, abs=1e-6)


def test_value_and_gap_agree_with_the_lp_on_a_random_finite_sum_game():
    components = np.random.default_rng(7).standard_normal((20, 30, 30))
    game = FiniteSumMatrixGame(components)
    value = lp_game_value(game.matrix)
    for name, result in run_every_method(game, None, tol=1e-8).items():
        assert result.converged, name
        assert game.value(result.u) == pytest.approx(value, abs=1e-5), name
        assert 0 <= result.gap <= 1e-5, name  # the LP's gap is 0
        x, y = game.split(result.u)
        assert np.max(x @ game.matrix) == pytest.approx(value, abs=1e-5)  # x guarantees the value


def test_page_halpern_is_not_a_method_for_bilinear_games():
    # Alg. 1 needs a cocoercive F; on rock-paper-scissors the anchored forward step keeps orbiting.
    game = FiniteSumMatrixGame(split_into_components(RPS, 4))
    result = solve_page_halpern(game, np.array([0.7, 0.2, 0.1, 0.1, 0.1, 0.8]), max_iter=3000, seed=0)
    assert not result.converged and result.residual > 0.1


def test_page_halpern_solves_the_cocoercive_least_squares_instance():
    problem = least_squares_problem(16, 6, seed=2, bound=0.3)
    # mean_i 1/2 ||B_i u - c_i||^2 = 1/2 ||R u + R^{-T} q||^2 + const with mean M_i = R^T R, mean q_i = q.
    factor = np.linalg.cholesky(problem.matrix).T
    reference = lsq_linear(factor, -np.linalg.solve(factor.T, problem.offset), bounds=(-0.3, 0.3), tol=1e-14).x
    assert np.any(np.isclose(np.abs(reference), 0.3))  # some bound is active
    result = solve_page_halpern(problem, restart=0.5, tol=1e-8, max_iter=100_000, seed=1)
    assert result.converged
    np.testing.assert_allclose(result.u, reference, atol=1e-6)


def test_bilinear_quadratic_components_average_to_the_qp_operator_and_solvers_find_its_root():
    n, n_components = 8, 4
    problem = bilinear_quadratic_problem(n, n_components)
    coupling = np.zeros((n, n))
    coupling[np.arange(n), n - 1 - np.arange(n)] = 0.25
    coupling[np.arange(n - 1), n - 2 - np.arange(n - 1)] = -0.25
    b, h = np.full(n, 0.25), np.eye(n)[-1] / 4
    u = np.random.default_rng(0).standard_normal(2 * n)
    x, y = u[:n], u[n:]
    expected = np.r_[2 * coupling.T @ coupling @ x - h - coupling.T @ y, coupling @ x - b]
    np.testing.assert_allclose(problem.operator(u), expected, atol=1e-14)
    each = np.stack([problem.component_operator(u, i) for i in range(n_components)])
    np.testing.assert_allclose(each.mean(axis=0), expected, atol=1e-14)
    root = np.linalg.solve(problem.matrix, -problem.offset)
    for result in (
        solve_extragradient(problem, tol=1e-9, max_iter=50_000),
        solve_vr_halpern(problem, restart=0.5, tol=1e-9, max_iter=50_000),
    ):
        assert result.converged
        np.testing.assert_allclose(result.u, root, atol=1e-6)


# --------------------------------------------------------------------------------------------- estimator, oracle


def test_the_minibatch_correction_is_unbiased():
    game = FiniteSumMatrixGame(split_into_components(np.random.default_rng(4).standard_normal((6, 6)), 40))
    rng = np.random.default_rng(5)
    u, v = game.project(rng.random(12)), game.project(rng.random(12))
    full = game.operator(u) - game.operator(v)
    singles = np.stack([game.component_difference(u, v, i) for i in range(40)])
    np.testing.assert_allclose(singles.mean(axis=0), full, atol=1e-15)  # b = 1: the exact average
    np.testing.assert_allclose(game.component_difference(u, v, np.arange(40)), full, atol=1e-15)  # b = N
    draws = np.stack([game.component_difference(u, v, rng.choice(40, 6, replace=False)) for _ in range(20_000)])
    error = np.linalg.norm(draws.mean(axis=0) - full)
    assert error <= 1e-2 * np.linalg.norm(full)
    assert error <= 4 * np.sqrt(np.trace(np.cov(draws.T)) / len(draws))  # within the CLT's spread
    assert np.linalg.norm(draws[0] - full) > 10 * np.linalg.norm(draws.mean(axis=0) - full)  # a draw is noisy


def test_page_estimator_with_the_whole_batch_is_the_exact_anchored_forward_step():
    # With b = N every mini-batch correction is exact, so Alg. 1 reduces to u+ = P(l u0 + (1-l) u - eta F(u)).
    problem = least_squares_problem(9, 5, seed=4)
    solver = PageHalpern(problem, batch_size=9, seed=0)
    u0 = u = problem.initial_point()
    for k in range(60):
        weight = 2 / (k + 4)
        u = problem.project(weight * u0 + (1 - weight) * u - solver.step_size * problem.operator(u))
        solver.step()
        np.testing.assert_allclose(solver.u, u, atol=1e-12)


def test_oracle_accounting():
    game = annotator_matrix_game(5, 16, seed=1)
    for solver_class in (ProjectedExtragradient, Halpern):
        solver = solver_class(game)
        for k in range(1, 8):
            metrics = solver.step()
            assert solver.oracle_calls == metrics["oracle_calls"] == 2 * 16 * k
            assert metrics["epochs"] == 2 * k
    page = PageHalpern(game, seed=0)
    full_passes = 0
    for k in range(200):
        before = page.oracle_calls
        page.step()
        cost = page.oracle_calls - before
        assert cost in (16, 2 * 4)  # a full pass (N) or a mini-batch of b = floor(sqrt(16)) = 4, twice
        assert k > 1 or cost == 16  # p_0 = p_1 = 1
        full_passes += cost == 16
    assert 0.15 < full_passes / 200 < 0.6  # p_k = 4/(sqrt(N)+5) = 0.44 after k = 5
    no_snapshots = VRHalpern(game, snapshot_probability=1e-300, seed=0)  # never refreshes the snapshot
    expected = 0
    for k in range(30):
        no_snapshots.step()
        expected += 16 + 2 * no_snapshots.inner_iterations(k)
        assert no_snapshots.oracle_calls == expected
    vr = VRHalpern(game, seed=0)
    inner = sum(vr.inner_iterations(k) for k in range(30))
    for _ in range(30):
        vr.step()
    snapshots, remainder = divmod(vr.oracle_calls - 30 * 16 - 2 * inner, 16)
    assert remainder == 0 and 0 < snapshots < inner  # each refresh costs N, with probability p = 1/N


def test_same_seed_same_run_and_different_seed_different_run():
    game = annotator_matrix_game(6, 25, seed=3)
    for solve in (solve_vr_halpern, solve_page_halpern):
        a, b, c = (solve(game, max_iter=40, seed=s) for s in (11, 11, 12))
        np.testing.assert_array_equal(a.history["residual"], b.history["residual"])
        np.testing.assert_array_equal(a.u, b.u)
        assert not np.array_equal(a.history["residual"], c.history["residual"])


# --------------------------------------------------------------------------------------------- rates and budgets


def test_halpern_residual_decays_like_one_over_k():
    game = FiniteSumMatrixGame(split_into_components(RPS, 4))
    u0 = np.array([0.7, 0.2, 0.1, 0.1, 0.1, 0.8])
    result = solve_halpern(game, u0, tol=0.0, max_iter=3000)
    k = np.arange(1, result.n_iter + 1)
    scaled = result.history["residual"] * k
    distance = np.linalg.norm(u0 - np.full(6, 1 / 3))
    # Yoon & Ryu's EAG bound ||F(u_k)|| <= sqrt(260) L ||u_0 - u*|| / (k+1), as a yardstick for the natural map.
    assert scaled.max() <= math.sqrt(260) * game.lipschitz * distance
    assert scaled[-1] >= 0.1 * scaled[len(k) // 2]  # and not faster than 1/k: the anchor's pull is Theta(1/k)
    extragradient = solve_extragradient(game, u0, tol=0.0, max_iter=3000)
    assert extragradient.residual < 1e-3 * result.residual  # EG is linear on this sharp problem


def test_epoch_budget_and_epochs_to_tolerance():
    game = annotator_matrix_game(8, 20, seed=2)
    result = solve_vr_halpern(game, tol=0.0, max_epochs=30)
    assert not result.converged and "epoch budget" in result.message
    assert 30 <= result.epochs < 30 + 3  # the last outer step may overrun by at most about one
    residual, epochs = result.history["residual"], result.history["epochs"]
    first = np.flatnonzero(residual <= residual[5])[0]
    assert epochs_to_tolerance(result, residual[5]) == epochs[first] and first <= 5
    assert epochs_to_tolerance(result, 0.0) == math.inf


# --------------------------------------------------------------------------------------------- inputs


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="^components"):
        FiniteSumMatrixGame(np.ones((3, 3)))
    with pytest.raises(ValueError, match="^components"):
        FiniteSumMatrixGame(np.ones((0, 3, 3)))  # N < 1
    with pytest.raises(ValueError, match="^components"):
        FiniteSumMatrixGame(np.full((2, 3, 3), np.nan))
    with pytest.raises(ValueError, match="^matrices"):
        FiniteSumAffineProblem(np.ones((2, 3, 4)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="^offsets"):
        FiniteSumAffineProblem(np.ones((2, 3, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="^lower"):
        FiniteSumAffineProblem(np.ones((2, 3, 3)), np.ones((2, 3)), lower=1.0, upper=0.0)
    game = annotator_matrix_game(4, 3)
    with pytest.raises(ValueError, match="^u0"):
        solve_extragradient(game, np.ones(5))
    with pytest.raises(ValueError, match="^u0"):
        solve_halpern(game, np.full(8, np.nan))
    with pytest.raises(ValueError, match="^step"):
        ProjectedExtragradient(game, step=0.0)
    with pytest.raises(ValueError, match="^restart"):
        Halpern(game, restart=1.5)
    with pytest.raises(ValueError, match="^tol"):
        VRHalpern(game, tol=-1.0)
    with pytest.raises(ValueError, match="^batch_size"):
        PageHalpern(game, batch_size=4)
    with pytest.raises(ValueError, match="^snapshot_probability"):
        VRHalpern(game, snapshot_probability=1.0)
    with pytest.raises(ValueError, match="^max_epochs"):
        solve_vr_halpern(game, max_epochs=0)
    with pytest.raises(ValueError, match="^indices"):
        game.component_operator(game.initial_point(), 3)
    with pytest.raises(ValueError, match="^v"):
        project_simplex([0.5, np.nan])
    with pytest.raises(ValueError, match="^n_actions"):
        annotator_matrix_game(1, 3)
    with pytest.raises(ValueError, match="^n_annotators"):
        annotator_matrix_game(3, 0)
    with pytest.raises(TypeError, match="^seed"):
        annotator_matrix_game(3, 2, seed=1.5)
    with pytest.raises(TypeError, match="^problem"):
        ProjectedExtragradient(RPS)
