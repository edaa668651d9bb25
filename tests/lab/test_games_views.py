"""Preference-game views without a browser: log axes, the bound beside the measured curve, one bar per action, an
animation that leaves the solver's last policy on screen, and fitted lines through the regret scatter."""

import numpy as np
import plotly.graph_objects as go
import pytest

from lab.games_views import (
    PolicyAnimation,
    convergence_figure,
    fit_line,
    per_query_factor,
    policy_bars_figure,
    regret_curves_figure,
    regret_scatter_figure,
    residual_figure,
    update_policy_bars,
)
from theory.games import NashMirrorProx, cyclic_game, solve_equilibrium, zipf_reference


def curves():
    queries = np.arange(0.0, 41.0, 2.0)
    return {
        "nash_mp": {
            "iteration": queries / 2, "queries": queries, "seconds": queries / 100, "kl": 0.5**queries,
            "certificate": 2 * 0.5**queries, "exploitability": 0.5**queries, "bound": 0.8 ** (queries / 2),
        },
        "nash_md": {
            "iteration": queries, "queries": queries, "seconds": queries / 50, "kl": np.r_[1.0, np.full(20, 0.01)],
            "certificate": np.full(21, 0.1), "exploitability": np.r_[0.0, np.full(20, 0.01)],
        },
    }  # fmt: skip


def test_convergence_figure_draws_log_curves_with_the_bound_beside_them():
    figure = convergence_figure(curves(), beta=0.5, labels={"nash_mp": "Nash-MP"})
    assert figure.layout.yaxis.type == "log"
    measured, bound, stalled = figure.data
    assert measured.name == "Nash-MP (×0.500 per query)"  # 0.5^N
    assert bound.line.dash == "dash" and bound.line.color == measured.line.color
    assert "×0.707 per query" in bound.name  # (1 + 2 beta)^(-1/2) at beta = 1/2
    np.testing.assert_allclose(bound.y, 0.8 ** (np.arange(0, 41, 2) / 2))
    assert stalled.name == "nash_md (×0.891 per query)"  # (0.01 / 1)^(1/40)
    by_iteration = convergence_figure(curves(), x="iterations", y="exploitability")
    assert len(by_iteration.data) == 2  # the bound belongs to KL only
    np.testing.assert_array_equal(by_iteration.data[1].x, np.arange(2.0, 41.0, 2.0))  # the zero at N = 0 left out
    with pytest.raises(ValueError, match="^x: expected one of"):
        convergence_figure(curves(), x="epochs")
    assert np.isnan(per_query_factor([0, 1], [0.0, 1.0]))


def test_policy_bars_have_one_bar_per_action_and_update_in_place():
    policies = {"π*": np.full(7, 1 / 7), "μ": zipf_reference(7)}
    figure = policy_bars_figure(policies)
    assert [len(trace.x) for trace in figure.data] == [7, 7] and figure.layout.barmode == "group"
    new = np.eye(7)[2]
    update_policy_bars(figure, {"μ": new}, title="step 3")
    np.testing.assert_array_equal(figure.data[1].y, new)
    assert figure.layout.title.text == "step 3"
    with pytest.raises(ValueError, match="^policies: no bar trace named 'π'"):
        update_policy_bars(figure, {"π": new})
    with pytest.raises(ValueError, match="^policies: expected 1-D policies"):
        policy_bars_figure({"a": np.ones(3) / 3, "b": np.ones(4) / 4})


@pytest.mark.parametrize("min_interval, redraws", [(0.0, 31), (1e9, 2)])
def test_the_animation_throttles_and_ends_on_the_solvers_last_policy(min_interval, redraws):
    game = cyclic_game(9, 0.5, reference=zipf_reference(9))
    star = solve_equilibrium(game)
    figure = go.FigureWidget(policy_bars_figure({"π*": star.policy, "μ": game.reference, "Nash-MP": game.reference}))
    solver = NashMirrorProx(game, target=star.log_policy, tol=0.0)
    animation = PolicyAnimation(figure, "Nash-MP", min_interval=min_interval)
    outcome = animation.run(solver, max_iter=30)
    assert outcome.n_iter == 30 and animation.redraws == redraws  # the start, then every step or only the last
    np.testing.assert_array_equal(figure.data[2].y, solver.policy)
    assert "iteration 30, 60 queries" in figure.layout.title.text
    np.testing.assert_allclose(figure.data[2].y, star.policy, atol=1e-5)  # KL <= 2^-30 KL0


def test_regret_views_fit_a_line_through_the_scatter():
    scale = np.array([1.0, 2.0, 4.0, 8.0])
    assert fit_line(scale, 3 + 0.5 * scale) == pytest.approx((3.0, 0.5, 1.0))
    figure = regret_scatter_figure(scale, {"oomd": 3 + 0.5 * scale, "ogd": np.array([1.0, 0.0, 2.0, 3.0])})
    points, line = figure.data[0], figure.data[1]
    assert points.mode == "markers" and line.line.dash == "dash"
    assert line.name == "fit: 3.00 + 0.500·scale, R² = 1.000"
    np.testing.assert_allclose(line.y, 3 + 0.5 * line.x)
    curves_figure = regret_curves_figure([10, 20], {"oomd": [1.0, 1.5], "ogd": [2.0, 2.5]})
    assert [trace.name for trace in curves_figure.data] == ["oomd", "ogd"]
    with pytest.raises(ValueError, match="^curves: 'ogd' has 1 points"):
        regret_curves_figure([10, 20], {"ogd": [2.0]})


def test_residual_figure_is_log_log_and_leaves_out_zeros():
    figure = residual_figure(
        {"vr_halpern": {"epochs": np.array([1.0, 2.5, 4.0]), "residual": np.array([0.1, 0.01, 0.0])}},
        labels={"vr_halpern": "VR-Halpern"},
    )
    assert figure.layout.xaxis.type == "log" and figure.layout.yaxis.type == "log"
    np.testing.assert_array_equal(figure.data[0].x, [1.0, 2.5])
    assert figure.data[0].name == "VR-Halpern"
