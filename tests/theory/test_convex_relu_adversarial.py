"""The robust convex program (Bai, Gautam & Sojoudi, arXiv 2201.01965 §4): optimum, feasibility, and exactness.

No torch here: the worst case of a network whose patterns are constant on each ball is computed in closed form.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_moons

from theory.convex_relu.adversarial import (
    hinge_loss,
    network_ball_margins,
    robust_losses,
    robust_margins,
    robust_objective,
    solve_robust_cvxpy,
    solve_standard_hinge_cvxpy,
)
from theory.convex_relu.problem import ConvexReLUProblem, make_problem, recover_network
from theory.convex_relu.reference import solve_cvxpy

TIGHT = {"tol_gap_abs": 1e-9, "tol_gap_rel": 1e-9, "tol_feas": 1e-9}
EPS = 0.2
DUAL = {"inf": 1, "2": 2}


def moons_problem(n=60, n_gates=30, beta=1e-3, noise=0.2, seed=0):
    """Standardised two-moons with labels in {-1, +1} and a bias column."""
    X, t = make_moons(n, noise=noise, random_state=seed)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return make_problem(X, 2.0 * t - 1.0, beta, n_gates, seed=seed)


@pytest.fixture(scope="module")
def problem():
    return moons_problem()


@pytest.fixture(scope="module")
def robust(problem):
    return {norm: solve_robust_cvxpy(problem, EPS, norm=norm, **TIGHT) for norm in ("inf", "2")}


def test_robust_program_at_eps_zero_is_the_standard_program(problem):
    standard = solve_standard_hinge_cvxpy(problem, **TIGHT)
    assert standard.status == "optimal"
    for norm in ("inf", "2"):
        at_zero = solve_robust_cvxpy(problem, 0.0, norm=norm, loss="hinge", **TIGHT)
        assert at_zero.objective == pytest.approx(standard.objective, rel=1e-6)
    squared = solve_robust_cvxpy(problem, 0.0, loss="squared", **TIGHT)
    assert squared.objective == pytest.approx(solve_cvxpy(problem, **TIGHT).objective, rel=1e-6)


@pytest.mark.parametrize(("norm", "loss"), [("inf", "hinge"), ("2", "hinge"), ("inf", "squared")])
def test_robust_program_is_continuous_at_eps_zero(problem, norm, loss):
    """At eps > 0 every norm term is in the program; a tiny eps moves the optimum by O(eps)."""
    at_zero = solve_robust_cvxpy(problem, 0.0, norm=norm, loss=loss, **TIGHT)
    tiny = solve_robust_cvxpy(problem, 1e-7, norm=norm, loss=loss, **TIGHT)
    assert tiny.objective == pytest.approx(at_zero.objective, rel=1e-4)
    assert tiny.objective >= at_zero.objective * (1 - 1e-6)


@pytest.mark.parametrize(("norm", "loss"), [("inf", "hinge"), ("2", "squared")])
def test_robust_optimum_increases_with_eps(problem, norm, loss):
    values = [solve_robust_cvxpy(problem, eps, norm=norm, loss=loss).objective for eps in (0.0, 0.05, 0.1, 0.2)]
    assert np.all(np.diff(values) > 0), values


def test_solution_objective_matches_its_recomputation(problem, robust):
    for norm, solution in robust.items():
        assert solution.status == "optimal"
        assert solution.objective == pytest.approx(robust_objective(problem, solution.V, solution.W, EPS, norm=norm))
        assert solution.loss_value == pytest.approx(
            robust_losses(problem, solution.V, solution.W, EPS, norm=norm).sum()
        )


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_recovered_patterns_are_constant_on_every_training_ball(problem, robust, norm):
    solution = robust[norm]
    scale = np.abs(problem.X).max() * np.linalg.norm(solution.V, axis=0).sum()
    assert robust_margins(problem, solution.V, EPS, norm=norm).min() >= -1e-7 * scale
    assert robust_margins(problem, solution.W, EPS, norm=norm).min() >= -1e-7 * scale
    network = recover_network(problem, solution.V, solution.W)
    assert network_ball_margins(problem, network, EPS, norm=norm).min() >= -1e-7 * np.abs(network.hidden).max()
    # not vacuous: the standard solution's neurons do change pattern inside some ball
    standard = solve_standard_hinge_cvxpy(problem)
    standard_network = recover_network(problem, standard.V, standard.W)
    assert network_ball_margins(problem, standard_network, EPS, norm=norm).min() < -1e-3


def _worst_case_points(problem, network, norm):
    """x_k + delta_k with delta_k maximising -y_k f on the ball, valid because f is affine there with slope g_k."""
    slopes = network.hidden[:-1] @ (network.output[:, None] * (problem.X @ network.hidden > 0).T)  # d' x n
    if norm == "inf":
        step = np.sign(slopes).T
    else:
        step = (slopes / np.linalg.norm(slopes, axis=0)).T
    worst = problem.X.copy()
    worst[:, :-1] -= EPS * problem.y[:, None] * step
    return worst


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_loss_term_is_the_exact_worst_case_loss_of_the_recovered_network(problem, robust, norm):
    solution = robust[norm]
    network = recover_network(problem, solution.V, solution.W)
    worst = _worst_case_points(problem, network, norm)
    assert np.all(worst[:, -1] == 1.0)
    assert solution.loss_value > 1.0  # the attack does cost something at this eps
    assert hinge_loss(problem, network(worst)) == pytest.approx(solution.loss_value, rel=1e-6)
    # and no point of any ball does worse (random points, corners for l_inf, the sphere for l_2)
    rng = np.random.default_rng(0)
    for _ in range(200):
        if norm == "inf":
            delta = EPS * rng.choice([-1.0, 1.0], size=(problem.n, problem.d - 1))
        else:
            delta = rng.standard_normal((problem.n, problem.d - 1))
            delta *= EPS / np.linalg.norm(delta, axis=1, keepdims=True)
        moved = problem.X.copy()
        moved[:, :-1] += delta
        per_point = np.maximum(1.0 - problem.y * network(moved), 0.0)
        assert np.all(per_point <= robust_losses(problem, solution.V, solution.W, EPS, norm=norm) + 1e-7)


def test_squared_robust_loss_is_exact_on_the_worst_point(problem):
    solution = solve_robust_cvxpy(problem, EPS, norm="inf", loss="squared", **TIGHT)
    network = recover_network(problem, solution.V, solution.W)
    slopes = network.hidden[:-1] @ (network.output[:, None] * (problem.X @ network.hidden > 0).T)
    residual_sign = np.sign(network(problem.X) - problem.y)
    worst = problem.X.copy()
    worst[:, :-1] += EPS * residual_sign[:, None] * np.sign(slopes).T
    value = 0.5 * np.sum((network(worst) - problem.y) ** 2)
    assert value == pytest.approx(solution.loss_value, rel=1e-6)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: solve_robust_cvxpy(p, -0.1), "eps"),
        (lambda p: solve_robust_cvxpy(p, float("nan")), "eps"),
        (lambda p: solve_robust_cvxpy(p, 0.1, norm="1"), "norm"),
        (lambda p: solve_robust_cvxpy(p, 0.1, loss="logistic"), "loss"),
        (lambda p: solve_robust_cvxpy(ConvexReLUProblem(p.X, (p.y + 1) / 2, p.beta, p.patterns, p.gates), 0.1), "y"),
        (lambda p: solve_standard_hinge_cvxpy(ConvexReLUProblem(p.X, 2 * p.y, p.beta, p.patterns, p.gates)), "y"),
    ],
)
def test_validation_names_the_argument(problem, call, message):
    with pytest.raises(ValueError, match=message):
        call(problem)


def test_problem_must_be_a_convex_relu_problem():
    with pytest.raises(TypeError, match="problem"):
        solve_robust_cvxpy(np.zeros((3, 3)), 0.1)
