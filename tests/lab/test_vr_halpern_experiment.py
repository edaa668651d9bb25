"""vr-halpern: the logged residuals are the solvers' histories, the logged constants are the problem's, agreeing
components give VR-Halpern its sqrt(N) edge, and bad configs raise naming the field."""

import math

import numpy as np
import pytest

from lab import ConfigError, get
from lab.experiments.vr_halpern import load_results
from theory.games.halpern import (
    FiniteSumMatrixGame,
    annotator_matrix_game,
    solve_extragradient,
    solve_halpern,
    solve_vr_halpern,
)


def test_logged_residuals_are_the_solvers_histories_and_constants_the_problems(store):
    experiment = get("vr-halpern")
    cfg = experiment.config(n_components=8, n_actions=6, max_epochs=40.0, seed=3)
    results = load_results(store.metrics(experiment.run(cfg, store=store)))
    game = annotator_matrix_game(6, 8, seed=3)
    runs = {
        "extragradient": solve_extragradient(game, tol=1e-8, max_epochs=40.0),
        "halpern": solve_halpern(game, restart=0.5, tol=1e-8, max_epochs=40.0),
        "vr_halpern": solve_vr_halpern(game, restart=0.5, tol=1e-8, max_epochs=40.0, seed=3),
    }
    for name, result in runs.items():
        curve = results.curves[name]
        np.testing.assert_array_equal(curve["iteration"], np.arange(1, result.n_iter + 1))
        for metric in ("residual", "epochs", "oracle_calls", "gap"):
            np.testing.assert_array_equal(curve[metric], result.history[metric], err_msg=f"{name} {metric}")
        assert results.converged[name] == result.converged
    constants = results.constants
    assert constants["lipschitz"] == game.lipschitz and constants["mean_square_lipschitz"] == game.mean_square_lipschitz
    assert constants["agreement"] == pytest.approx(game.mean_square_lipschitz / (math.sqrt(8) * game.lipschitz))
    assert constants["initial_residual"] == game.natural_residual(game.initial_point())


def test_log_every_keeps_every_kth_iteration_and_the_last(store):
    experiment = get("vr-halpern")
    cfg = experiment.config(n_components=5, n_actions=5, max_epochs=25.0, log_every=3, restart=False)
    results = load_results(store.metrics(experiment.run(cfg, store=store)))
    reference = solve_vr_halpern(annotator_matrix_game(5, 5, seed=0), tol=1e-8, max_epochs=25.0, seed=0)
    last = reference.n_iter
    steps = np.array([k for k in range(1, last + 1) if k % 3 == 0 or k == last])
    curve = results.curves["vr_halpern"]
    np.testing.assert_array_equal(curve["iteration"], steps)
    np.testing.assert_array_equal(curve["residual"], reference.history["residual"][steps - 1])


def test_identical_components_give_agreement_one_over_sqrt_n_and_vr_halpern_wins(store):
    """s = 0: every A_i = A, so L = L_F and the predicted edge sqrt(N) L_F / L = sqrt(N) = 10 is all there."""
    experiment = get("vr-halpern")
    cfg = experiment.config(problem="perturbed", disagreement=0.0, n_components=100, n_actions=20, max_epochs=600.0)
    results = load_results(store.metrics(experiment.run(cfg, store=store)))
    assert results.constants["agreement"] == pytest.approx(0.1, rel=1e-12)
    game = FiniteSumMatrixGame(np.broadcast_to(np.random.default_rng(0).standard_normal((20, 20)), (100, 20, 20)))
    assert results.constants["lipschitz"] == pytest.approx(game.lipschitz, rel=1e-12)
    assert results.converged["vr_halpern"] and not results.converged["extragradient"]
    assert results.curves["vr_halpern"]["epochs"][-1] < 600 <= results.curves["extragradient"]["epochs"][-1]


@pytest.mark.parametrize(
    "values, field",
    [
        ({"problem": "bilinear", "n_actions": 10, "n_components": 11}, "n_components"),
        ({"n_components": 20_000, "n_actions": 100}, "n_components"),
        ({"problem": "quadratic"}, "problem"),
        ({"max_epochs": 0.0}, "max_epochs"),
    ],
)
def test_bad_configs_raise_naming_the_field(values, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as error:
        get("vr-halpern").config(**values)
    assert error.value.field == field
