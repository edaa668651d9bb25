"""Figures and a widget for the Small-Gain Nash notebook: margin against the weight ratio with the
timescale band shaded, and trajectories of the flow and of Euler drawn with the metric's ellipse.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from theory.sgn import certify, margin, timescale_band, two_player_optimum
from theory.sgn.dynamics import simulate, weighted_norm
from theory.sgn.examples import asymmetric_toy

RATIOS = np.geomspace(1e-2, 1e5, 400)


def margin_band_figure(mu, coupling, ratio: float) -> go.Figure:
    """alpha(w) against w2/w1 (log axis), the band where alpha > 0 shaded, the chosen ratio marked."""
    mu, coupling = np.asarray(mu, float), np.asarray(coupling, float)
    alphas = np.array([margin(mu, coupling, [1.0, r]) for r in RATIOS])
    figure = go.Figure(layout=dict(template="plotly_white", margin=dict(t=50, r=20)))
    figure.add_scatter(x=RATIOS, y=alphas, mode="lines", name="margin α(w)")
    band = timescale_band(mu, coupling)
    if band is not None:
        figure.add_vrect(x0=band[0], x1=min(band[1], RATIOS[-1]), fillcolor="seagreen", opacity=0.15, line_width=0)
    best_ratio, best_alpha = two_player_optimum(mu, coupling)
    if np.isfinite(best_ratio):
        figure.add_scatter(x=[best_ratio], y=[best_alpha], mode="markers", name=f"optimum r* = {best_ratio:.3g}")
    figure.add_scatter(x=[1.0], y=[margin(mu, coupling, [1.0, 1.0])], mode="markers", name="Euclidean weights (1, 1)")
    figure.add_vline(x=ratio, line_dash="dash", line_color="gray")
    figure.add_hline(y=0.0, line_color="black", line_width=1)
    low = max(min(alphas.min(), -0.5), -5 * abs(best_alpha) - 1)
    figure.update_layout(
        title=f"α(w) at w2/w1 = {ratio:.3g}: {margin(mu, coupling, [1.0, ratio]):.4f}  (band shaded)",
        xaxis=dict(type="log", title="weight ratio w2 / w1"),
        yaxis=dict(title="margin α(w)", range=[low, max(alphas.max(), 0) * 1.1 + 0.05]),
    )
    return figure


class MarginExplorer:
    """Sliders for the toy's coupling strength and the weight ratio, redrawing :func:`margin_band_figure`.

    The toy is f1 = x1^2/2 + lam a x1 x2, f2 = x2^2/2 + lam b x1 x2, so mu = (1, 1), L12 = lam a, L21 = lam b.
    """

    def __init__(self, a: float = 10.0, b: float = 0.05, coupling: float = 1.0, ratio: float = 200.0) -> None:
        self.a, self.b = a, b
        self.coupling = widgets.FloatSlider(
            value=coupling, min=0.0, max=3.0, step=0.05, description="coupling λ", continuous_update=False
        )
        self.ratio = widgets.FloatLogSlider(
            value=ratio, base=10, min=-2, max=5, step=0.05, description="w2 / w1", continuous_update=False
        )
        self.summary = widgets.HTML()
        self.figure = go.FigureWidget(margin_band_figure(*self.bounds(), ratio))
        for control in (self.coupling, self.ratio):
            control.observe(lambda _: self.redraw(), names="value")
        self.widget = widgets.VBox([widgets.HBox([self.coupling, self.ratio]), self.summary, self.figure])
        self.redraw()

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lam = self.coupling.value
        return np.ones(2), np.array([[0.0, lam * self.a], [lam * self.b, 0.0]])

    def redraw(self) -> None:
        new = margin_band_figure(*self.bounds(), self.ratio.value)
        with self.figure.batch_update():
            self.figure.data = ()
            self.figure.layout = new.layout
            for trace in new.data:
                self.figure.add_trace(trace)
        lam = self.coupling.value
        euclidean = 1 - lam * (self.a + self.b) / 2
        certificate = certify(asymmetric_toy(lam * self.a, lam * self.b))
        self.summary.value = (
            f"Euclidean monotonicity margin {euclidean:.3f} ({'certifies' if euclidean > 0 else 'fails'}); "
            f"SGN optimum α* = {certificate.margin:.3f} ({'certifies' if certificate.certified else 'fails'}); "
            f"band {_band_text(certificate.band)}"
        )

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _band_text(band) -> str:
    return "empty" if band is None else f"{band[0]:.3g} < w2/w1 < {band[1]:.3g}"


def trajectory_figure(
    game, weights, x0, steps: dict[str, float], *, n_steps: int, flow_time: float | None = None
) -> go.Figure:
    """2-D trajectories of Euler at each named step, the metric ellipse ||x||_M = ||x0||_M and the circle |x| = |x0|.

    With ``flow_time``, the flow x' = -F(x) itself is drawn too (RK4 with 2000 small steps up to that time).
    """
    if game.dim != 2:
        raise ValueError(f"game: expected a two-dimensional game, got dimension {game.dim}")
    x0 = np.asarray(x0, float)
    figure = go.Figure(layout=dict(template="plotly_white", margin=dict(t=50, r=20)))
    angle = np.linspace(0, 2 * np.pi, 200)
    circle = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    radius = weighted_norm(x0, weights, game.blocks)
    ellipse = circle * radius / np.sqrt(np.asarray(weights, float))
    figure.add_scatter(x=ellipse[:, 0], y=ellipse[:, 1], mode="lines", name="SGN ellipse ‖x‖_M = ‖x₀‖_M")
    euclid = circle * np.linalg.norm(x0)
    figure.add_scatter(x=euclid[:, 0], y=euclid[:, 1], mode="lines", line_dash="dot", name="Euclidean circle")
    if flow_time is not None:
        flow = simulate(game, x0, step=flow_time / 2000, n_steps=2000, method="rk4")
        figure.add_scatter(x=flow[:, 0], y=flow[:, 1], mode="lines", line_width=4, opacity=0.5, name="flow ẋ = −F(x)")
    for label, step in steps.items():
        states = simulate(game, x0, step=step, n_steps=n_steps)
        states = states[np.all(np.isfinite(states), axis=1) & (np.abs(states).max(axis=1) < 1e3)]
        figure.add_scatter(x=states[:, 0], y=states[:, 1], mode="lines", name=f"{label} (h = {step:.3g})")
    limit = 1.5 * np.abs(ellipse).max()
    figure.update_layout(
        xaxis=dict(range=[-limit, limit], title="x1"),
        yaxis=dict(range=[-limit, limit], title="x2", scaleanchor="x"),
        title="trajectories in the weighted metric",
    )
    return figure
