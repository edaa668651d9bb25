"""The convex ReLU program: patterns, recovery, certificate, checked against cvxpy and by hand."""

import numpy as np
import pytest

from theory.convex_relu.problem import (
    ConvexReLUProblem,
    certify,
    complete_planar_patterns,
    constraint_violation,
    convex_objective,
    duality_lower_bound,
    make_problem,
    network_objective,
    pattern_mismatches,
    predict,
    recover_network,
    sample_patterns,
    with_bias,
)
from theory.convex_relu.reference import solve_cvxpy, solve_gated_relaxation


def _problem(seed=0, n=50, d=3, gates=25, beta=0.1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.standard_normal(n)
    return make_problem(X, y, beta=beta, n_gates=gates, seed=seed)


def test_patterns_are_deduplicated_nonzero_and_match_their_gates():
    problem = _problem()
    patterns, gates = problem.patterns, problem.gates
    assert len({tuple(col) for col in patterns.T}) == patterns.shape[1] <= 25
    assert patterns.any(axis=0).all()
    np.testing.assert_array_equal(patterns, problem.X @ gates >= 0)
    np.testing.assert_array_equal(problem.X[:, -1], 1.0)  # the bias column is appended explicitly
    # duplicates collapse: the same gate twice gives one pattern
    X = with_bias(np.random.default_rng(1).standard_normal((10, 2)))
    many, _ = sample_patterns(X, 500, seed=0)
    assert many.shape[1] < 500 and len({tuple(col) for col in many.T}) == many.shape[1]


def test_hand_computed_objective_and_violation():
    X = np.array([[1.0, 1.0], [-1.0, 1.0], [2.0, 1.0]])
    problem = ConvexReLUProblem(X, y=[1.0, 0.0, 2.0], beta=0.5, patterns=[[1], [0], [1]], gates=[[1.0], [0.0]])
    V, W = np.array([[1.0], [0.0]]), np.zeros((2, 1))
    np.testing.assert_allclose(predict(problem, V, W), [1.0, 0.0, 2.0])
    assert convex_objective(problem, V, W) == pytest.approx(0.5 * 1.0)  # zero loss + beta * ||v|| = 0.5
    assert constraint_violation(problem, V, W)[0] == 0.0
    bad = np.array([[-1.0], [0.0]])  # -x: active rows become negative
    assert constraint_violation(problem, bad, W)[0] == pytest.approx(2.0)
    network = recover_network(problem, V, W)
    assert network.width == 1 and network.output[0] == pytest.approx(1.0)
    assert network_objective(problem, network) == pytest.approx(convex_objective(problem, V, W))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cvxpy_optimum_recovers_a_network_with_the_same_objective_and_a_tight_certificate(seed):
    problem = _problem(seed)
    reference = solve_cvxpy(problem)
    assert reference.status == "optimal" and not reference.relaxation
    certificate = certify(problem, reference.V, reference.W)
    assert certificate.objective == pytest.approx(reference.objective, rel=1e-9)
    assert certificate.relative_violation <= 1e-8
    assert certificate.network_objective == pytest.approx(certificate.objective, rel=1e-6)
    assert certificate.pattern_mismatches == 0 and certificate.width >= 1
    assert certificate.lower_bound <= reference.objective + 1e-9
    assert certificate.relative_gap <= 1e-6  # NNLS multipliers make the dual bound tight at the optimum


def test_the_lower_bound_holds_for_any_point_and_the_gated_relaxation_is_lower():
    problem = _problem(3)
    optimum = solve_cvxpy(problem).objective
    rng = np.random.default_rng(0)
    for _ in range(5):
        V, W = rng.standard_normal((2, problem.d, problem.n_patterns)) * 0.1
        assert duality_lower_bound(problem, V, W) <= optimum + 1e-9
    gated = solve_gated_relaxation(problem)
    assert gated.relaxation and gated.objective <= optimum + 1e-9


def test_pattern_mismatch_detects_a_wrong_pattern():
    problem = _problem(4)
    reference = solve_cvxpy(problem)
    network = recover_network(problem, reference.V, reference.W)
    flipped = network.__class__(-network.hidden, network.output, network.pattern)
    assert pattern_mismatches(problem, flipped) > 0


def test_bad_inputs_name_the_argument():
    X = np.ones((3, 2))
    with pytest.raises(ValueError, match="beta"):
        ConvexReLUProblem(X, np.ones(3), 0.0, np.ones((3, 1), bool), np.ones((2, 1)))
    with pytest.raises(ValueError, match="y:"):
        ConvexReLUProblem(X, np.ones(4), 1.0, np.ones((3, 1), bool), np.ones((2, 1)))
    with pytest.raises(ValueError, match="patterns"):
        ConvexReLUProblem(X, np.ones(3), 1.0, np.ones((2, 1), bool), np.ones((2, 1)))
    with pytest.raises(ValueError, match="gates"):
        ConvexReLUProblem(X, np.ones(3), 1.0, np.ones((3, 1), bool), np.ones((3, 1)))
    with pytest.raises(ValueError, match="X"):
        make_problem(np.array([[np.nan]]), [1.0], 1.0, 3)
    with pytest.raises(ValueError, match="n_gates"):
        make_problem(X, np.ones(3), 1.0, 0)
    with pytest.raises(ValueError, match="V"):
        convex_objective(_problem(), np.zeros((1, 1)), np.zeros((1, 1)))
    with pytest.raises(TypeError, match="problem"):
        solve_cvxpy("not a problem")


def test_complete_planar_patterns_reach_covers_count_and_beat_any_sample():
    rng = np.random.default_rng(5)
    X = with_bias(rng.standard_normal((15, 2)))
    patterns, gates = complete_planar_patterns(X)
    assert patterns.shape[1] == 15**2 - 15 + 1  # Cover: n^2 - n + 2 cells, the all-zero one dropped
    np.testing.assert_array_equal(patterns, X @ gates >= 0)
    sampled, _ = sample_patterns(X, 5000, seed=0)
    complete = {tuple(col) for col in patterns.T}
    assert {tuple(col) for col in sampled.T} <= complete
    with pytest.raises(ValueError, match="X: expected planar data"):
        complete_planar_patterns(np.ones((4, 2)))
