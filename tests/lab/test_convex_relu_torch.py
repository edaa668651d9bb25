"""PGD on recovered networks (robust vs standard convex solutions) and non-convex torch training vs the convex optimum.

Data: standardised two-moons (sklearn ``make_moons``, noise 0.2, random_state 0), 100 training and 100 test points;
labels in {-1, +1}; the bias column appended. The robust program is Bai, Gautam & Sojoudi (arXiv 2201.01965) §4.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_moons

from lab.convex_relu_torch import (
    accuracy,
    fgsm_attack,
    hinge_losses,
    nonconvex_gap,
    pgd_attack,
    robust_accuracy,
    train_nonconvex,
)
from theory.convex_relu.adversarial import robust_losses, solve_robust_cvxpy, solve_standard_hinge_cvxpy
from theory.convex_relu.problem import (
    ConvexReLUProblem,
    certify,
    complete_planar_patterns,
    make_problem,
    network_objective,
    recover_network,
    with_bias,
)
from theory.convex_relu.reference import solve_cvxpy

EPS = 0.2
ATTACK = {"steps": 50, "restarts": 3, "seed": 0}


def moons(n_train=100, n_test=100, noise=0.2, seed=0):
    X, t = make_moons(n_train + n_test, noise=noise, random_state=seed)
    X = (X - X[:n_train].mean(axis=0)) / X[:n_train].std(axis=0)
    y = 2.0 * t - 1.0
    return X[:n_train], y[:n_train], with_bias(X[n_train:]), y[n_train:]


@pytest.fixture(scope="module")
def setting():
    X, y, X_test, y_test = moons()
    problem = make_problem(X, y, beta=1e-3, n_gates=40, seed=0)
    standard = solve_standard_hinge_cvxpy(problem)
    robust = {norm: solve_robust_cvxpy(problem, EPS, norm=norm) for norm in ("inf", "2")}
    assert standard.status == "optimal" and all(s.status == "optimal" for s in robust.values())
    networks = {"standard": recover_network(problem, standard.V, standard.W)}
    networks |= {norm: recover_network(problem, s.V, s.W) for norm, s in robust.items()}
    return problem, X_test, y_test, robust, networks


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_attacks_stay_in_the_ball_and_never_touch_the_bias_column(setting, norm):
    problem, _, _, _, networks = setting
    for adversarial in (
        pgd_attack(networks["standard"], problem.X, problem.y, EPS, norm=norm, **ATTACK),
        fgsm_attack(networks["standard"], problem.X, problem.y, EPS, norm=norm),
    ):
        assert np.all(adversarial[:, -1] == 1.0)
        delta = adversarial[:, :-1] - problem.X[:, :-1]
        size = np.abs(delta).max(axis=1) if norm == "inf" else np.linalg.norm(delta, axis=1)
        assert size.max() <= EPS * (1 + 1e-12)
        assert size.max() >= EPS * (1 - 1e-9)  # the attack does move points to the boundary


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_pgd_hinge_loss_is_bounded_by_the_robust_program_and_reaches_it(setting, norm):
    """The program's loss term is an upper bound on any attack's hinge loss; on its own network it is attained."""
    problem, _, _, robust, networks = setting
    solution, network = robust[norm], networks[norm]
    adversarial = pgd_attack(network, problem.X, problem.y, EPS, norm=norm, **ATTACK)
    achieved = hinge_losses(network, adversarial, problem.y)
    assert achieved.sum() <= solution.loss_value * (1 + 1e-6) + 1e-9
    assert achieved.sum() >= solution.loss_value * (1 - 1e-6)  # exact: f is affine on each ball
    per_point = robust_losses(problem, solution.V, solution.W, EPS, norm=norm)
    np.testing.assert_allclose(achieved, per_point, atol=1e-6 * max(1.0, per_point.max()))


def test_pgd_accuracy_of_the_robust_network_is_its_certified_accuracy(setting):
    problem, _, _, robust, networks = setting
    solution = robust["inf"]
    certified = np.mean(robust_losses(problem, solution.V, solution.W, EPS, norm="inf") < 1.0)  # y f - eps|g|_1 > 0
    assert robust_accuracy(networks["inf"], problem.X, problem.y, EPS, norm="inf", **ATTACK) == certified


def test_robust_solution_beats_the_standard_one_under_pgd(setting):
    """Seeded numbers (l_inf, eps = 0.2): train 0.72 -> 0.81, test 0.67 -> 0.75; clean accuracy drops (1.0 -> 0.87)."""
    problem, X_test, y_test, _, networks = setting
    for X, y in ((problem.X, problem.y), (X_test, y_test)):
        standard = robust_accuracy(networks["standard"], X, y, EPS, norm="inf", **ATTACK)
        robust = robust_accuracy(networks["inf"], X, y, EPS, norm="inf", **ATTACK)
        assert robust >= standard + 0.05, (standard, robust)
    assert accuracy(networks["standard"], problem.X, problem.y) == 1.0
    assert accuracy(networks["inf"], problem.X, problem.y) < 0.95  # robustness costs clean accuracy here


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_pgd_is_at_least_as_strong_as_fgsm(setting, norm):
    problem, _, _, _, networks = setting
    network = networks["standard"]
    pgd = pgd_attack(network, problem.X, problem.y, EPS, norm=norm, **ATTACK)
    fgsm = fgsm_attack(network, problem.X, problem.y, EPS, norm=norm)
    assert np.sum(-problem.y * network(pgd)) >= np.sum(-problem.y * network(fgsm))
    assert hinge_losses(network, pgd, problem.y).sum() >= hinge_losses(network, fgsm, problem.y).sum()
    assert accuracy(network, pgd, problem.y) <= accuracy(network, fgsm, problem.y) < 1.0


def test_pgd_is_reproducible_and_eps_zero_is_the_identity(setting):
    problem, _, _, _, networks = setting
    first = pgd_attack(networks["standard"], problem.X, problem.y, EPS, steps=10, restarts=2, seed=3)
    again = pgd_attack(networks["standard"], problem.X, problem.y, EPS, steps=10, restarts=2, seed=3)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(pgd_attack(networks["standard"], problem.X, problem.y, 0.0), problem.X)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a | {"eps": -0.1}, "eps"),
        (lambda a: a | {"norm": "1"}, "norm"),
        (lambda a: a | {"steps": 0}, "steps"),
        (lambda a: a | {"restarts": 0}, "restarts"),
        (lambda a: a | {"step_size": -1.0}, "step_size"),
        (lambda a: a | {"y": (a["y"] + 1) / 2}, "y"),
        (lambda a: a | {"X": 2 * a["X"]}, "X"),
    ],
)
def test_attack_validation_names_the_argument(setting, change, message):
    problem, _, _, _, networks = setting
    with pytest.raises(ValueError, match=message):
        pgd_attack(networks["standard"], **change({"X": problem.X, "y": problem.y, "eps": EPS}))


# --- theory vs practice: non-convex training against the convex optimum -------------------------------------------


@pytest.fixture(scope="module")
def small():
    """n = 20 moons points, squared loss on +-1 labels, beta = 1e-2: all patterns, and 10 sampled gates."""
    X, t = make_moons(20, noise=0.2, random_state=0)
    X, y = (X - X.mean(axis=0)) / X.std(axis=0), 2.0 * t - 1.0
    features = with_bias(X)
    patterns, gates = complete_planar_patterns(features)
    full = ConvexReLUProblem(features, y, 1e-2, patterns, gates)
    sampled = make_problem(X, y, 1e-2, n_gates=10, seed=0)
    full_solution, sampled_solution = solve_cvxpy(full), solve_cvxpy(sampled)
    assert full_solution.status == sampled_solution.status == "optimal"
    return full, sampled, full_solution, sampled_solution


def test_the_enumeration_finds_every_pattern(small):
    full = small[0]
    n = full.n
    # Cover (1965): n vectors in general position in R^3 cut it into 2 (1 + (n-1) + C(n-1, 2)) = n^2 - n + 2 cones.
    assert full.n_patterns == n * n - n + 2 - 1  # the all-zero pattern is dropped
    np.testing.assert_array_equal(full.X @ full.gates >= 0, full.patterns)


def test_torch_training_logs_the_network_objective_exactly(small):
    full = small[0]
    for optimizer, lr in (("adam", 1e-2), ("sgd", 3e-3)):
        run = train_nonconvex(full, 30, optimizer=optimizer, lr=lr, epochs=1500, seed=0)
        assert run.objective.shape == (1501,)
        assert run.final_objective < 0.3 * run.objective[0]  # it trains
        block_means = run.objective[1:].reshape(15, 100).mean(axis=1)
        assert np.all(np.diff(block_means) < 0)  # descends over every 100 steps (Adam is not monotone step by step)
        assert network_objective(full, run.network) == pytest.approx(run.final_objective, rel=1e-9)
    again = train_nonconvex(full, 30, optimizer="sgd", lr=3e-3, epochs=1500, seed=0)
    np.testing.assert_array_equal(again.objective, run.objective)


def test_no_network_beats_the_all_pattern_convex_optimum_but_one_can_beat_sampled_patterns(small):
    """p*_all lower-bounds every network (certified by the dual bound); p*_S over 10 sampled gates does not."""
    full, sampled, full_solution, sampled_solution = small
    certificate = certify(full, full_solution.V, full_solution.W)
    assert certificate.relative_gap < 1e-6
    assert sampled_solution.objective > full_solution.objective * 1.1  # sampling loses a lot here
    rows = nonconvex_gap(full, full_solution.objective, 50, seeds=(0, 1, 2), optimizers=("adam",), epochs=3000)
    finals = np.array([row["final_objective"] for row in rows])
    assert np.all(finals >= certificate.lower_bound)  # theory: nothing goes below the global optimum
    assert np.all(finals <= full_solution.objective * 1.10)  # measured: +2.8% to +4.7% after 3000 Adam steps
    assert np.all(finals < sampled_solution.objective)  # torch found patterns outside the 10 sampled ones


def test_training_validation_names_the_argument(small):
    full = small[0]
    for kwargs, message in (
        ({"width": 0}, "width"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"lr": 0.0}, "lr"),
        ({"epochs": 0}, "epochs"),
    ):
        arguments = {"width": 5} | kwargs
        with pytest.raises(ValueError, match=message):
            train_nonconvex(full, arguments.pop("width"), **arguments)
