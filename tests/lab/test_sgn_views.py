"""SGN notebook views without a browser: sliders redraw the margin curve and the band."""

import numpy as np
import pytest

from lab.sgn_views import MarginExplorer, margin_band_figure, trajectory_figure
from theory.sgn import certify
from theory.sgn.examples import asymmetric_toy, lq_game


def test_explorer_redraws_curve_band_and_summary_when_sliders_move():
    explorer = MarginExplorer()
    curve = explorer.figure.data[0]
    assert np.max(curve.y) == pytest.approx(1 - np.sqrt(0.5), abs=1e-3)  # alpha* on the ratio grid
    assert len(explorer.figure.layout.shapes) == 3  # band + ratio line + zero line
    assert "SGN optimum α* = 0.293 (certifies)" in explorer.summary.value
    explorer.coupling.value = 2.0
    assert np.max(explorer.figure.data[0].y) < 0  # lam sqrt(ab) = 1.41 > 1: no weights certify
    assert len(explorer.figure.layout.shapes) == 2 and "band empty" in explorer.summary.value
    explorer.ratio.value = 10.0
    assert "w2/w1 = 10" in explorer.figure.layout.title.text


def test_margin_band_figure_marks_the_closed_form_optimum():
    figure = margin_band_figure([1.0, 2.0], [[0.0, 0.5], [0.2, 0.0]], ratio=1.0)
    optimum = figure.data[1]
    assert optimum.x[0] == pytest.approx(2.5)
    assert optimum.y[0] == pytest.approx(1.5 - 0.5 * np.sqrt(1 + 4 * 0.1))


def test_safe_euler_trajectory_stays_inside_the_ellipse():
    game = asymmetric_toy()
    certificate = certify(game)
    steps = {"certified": certificate.euler_step}
    figure = trajectory_figure(game, certificate.weights, [0.15, -0.15], steps, n_steps=400, flow_time=10.0)
    ellipse, flow, euler = figure.data[0], figure.data[2], figure.data[3]
    weights = certificate.weights
    radius = np.sqrt(weights[0] * ellipse.x[0] ** 2 + weights[1] * ellipse.y[0] ** 2)
    for trajectory in (flow, euler):
        inside = np.sqrt(weights[0] * np.asarray(trajectory.x) ** 2 + weights[1] * np.asarray(trajectory.y) ** 2)
        assert np.all(inside <= radius + 1e-12)
    # the flow contracts at the certified rate: ||x(T)||_M <= exp(-alpha T) ||x(0)||_M
    flow_end = np.sqrt(weights[0] * flow.x[-1] ** 2 + weights[1] * flow.y[-1] ** 2)
    assert flow_end <= radius * np.exp(-certificate.margin * 10.0) + 1e-12
    with pytest.raises(ValueError, match="game"):
        trajectory_figure(lq_game(1.0), np.ones(2), np.zeros(64), {}, n_steps=1)
