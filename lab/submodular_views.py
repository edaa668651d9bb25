"""Figures for the submodular-RL notebook: F(tau) training curves per method, heat maps of the cells each final
policy visits, and the objective's weight map. Pure builders: arrays in, plotly figures out (the arrays of a
stored run come from :func:`lab.experiments.submodular_rl.load_results`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#7f7f7f", "#9467bd", "#ff7f0e")


def _band_colour(colour: str, alpha: float = 0.2) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


def _layout(title: str) -> dict:
    return dict(template="plotly_white", title=title, margin=dict(t=50, r=20), legend=dict(orientation="h", y=-0.2))


def objective_curves_figure(
    iterations,
    curves: Mapping[str, np.ndarray],
    *,
    labels: Mapping[str, str] | None = None,
    ceiling: float | None = None,
    reference: tuple[str, float] | None = None,
    title: str = "batch mean F(τ) during training",
) -> go.Figure:
    """Per method, the mean over seeds of its batch-mean F(tau) against iteration, with a band of +- one standard
    error over seeds (none for one seed); ``curves[method]`` is (n_seeds, T). ``ceiling`` draws the analytic bound
    as a dashed line, ``reference`` = (label, value) a dotted one (e.g. the greedy oracle path)."""
    iterations = np.asarray(iterations, dtype=float)
    figure = go.Figure(layout=_layout(title))
    for (method, values), colour in zip(curves.items(), COLOURS, strict=False):
        values = np.atleast_2d(np.asarray(values, dtype=float))
        if values.shape[1] != iterations.size:
            raise ValueError(f"curves: {method!r} has {values.shape[1]} points, expected {iterations.size}")
        mean = values.mean(axis=0)
        label = (labels or {}).get(method, method)
        if values.shape[0] > 1:
            stderr = values.std(axis=0, ddof=1) / np.sqrt(values.shape[0])
            figure.add_scatter(
                x=np.concatenate([iterations, iterations[::-1]]),
                y=np.concatenate([mean + stderr, (mean - stderr)[::-1]]),
                fill="toself", fillcolor=_band_colour(colour), line=dict(width=0), hoverinfo="skip",
                showlegend=False, name=f"{label} ± s.e.",
            )  # fmt: skip
        figure.add_scatter(x=iterations, y=mean, mode="lines", line=dict(color=colour), name=label)
    span = [iterations.min(), iterations.max()] if iterations.size else [0, 1]
    if ceiling is not None:
        figure.add_scatter(
            x=span, y=[ceiling] * 2, mode="lines", line=dict(color="black", dash="dash"),
            name=f"analytic ceiling {ceiling:g}",
        )  # fmt: skip
    if reference is not None:
        figure.add_scatter(
            x=span, y=[reference[1]] * 2, mode="lines", line=dict(color="black", dash="dot"),
            name=f"{reference[0]} {reference[1]:g}",
        )  # fmt: skip
    figure.update_layout(xaxis_title="iteration", yaxis_title="F(τ)")
    return figure


def _grid_heatmap(values, walls, *, name: str, zmax: float | None, colorscale: str, showscale: bool) -> go.Heatmap:
    values = np.asarray(values, dtype=float)
    walls = np.asarray(walls, dtype=bool)
    if values.ndim != 2 or walls.shape != values.shape:
        raise ValueError(f"walls: expected the grid's shape {values.shape}, got {walls.shape}")
    rows, cols = values.shape
    return go.Heatmap(
        z=np.where(walls, np.nan, values),
        x=np.arange(cols),
        y=np.arange(rows),
        zmin=0.0,
        zmax=zmax,
        colorscale=colorscale,
        showscale=showscale,
        name=name,
        hovertemplate="row %{y}, col %{x}: %{z:.3g}<extra>" + name + "</extra>",
    )


def visits_figure(
    visits: Mapping[str, np.ndarray],
    walls,
    *,
    labels: Mapping[str, str] | None = None,
    start: tuple[int, int] | None = None,
    title: str = "expected visits per cell and episode of each final policy (× start, walls blank)",
) -> go.Figure:
    """One heat map per policy of ``visits[method]`` (rows, cols) on the grid, rows downwards, walls masked (NaN,
    drawn blank), one colour scale shared by all panels; ``start`` (row, col) is marked with a cross."""
    names = list(visits)
    if not names:
        raise ValueError("visits: expected at least one policy")
    zmax = max(float(np.nanmax(np.asarray(visits[name], dtype=float))) for name in names)
    titles = [(labels or {}).get(name, name) for name in names]
    figure = make_subplots(rows=1, cols=len(names), subplot_titles=titles, horizontal_spacing=0.03)
    for index, name in enumerate(names, start=1):
        heatmap = _grid_heatmap(
            visits[name], walls, name=titles[index - 1], zmax=zmax, colorscale="Viridis", showscale=index == len(names)
        )
        figure.add_trace(heatmap, row=1, col=index)
        if start is not None:
            figure.add_scatter(
                x=[start[1]], y=[start[0]], mode="markers", marker=dict(symbol="x", color="red", size=10),
                name="start", showlegend=False, row=1, col=index,
            )  # fmt: skip
        anchor = "x" if index == 1 else f"x{index}"
        figure.update_yaxes(autorange="reversed", scaleanchor=anchor, showticklabels=index == 1, row=1, col=index)
        figure.update_xaxes(constrain="domain", row=1, col=index)
    figure.update_layout(template="plotly_white", title=title, margin=dict(t=80, r=20), height=320)
    return figure


def weight_map_figure(weights, walls, *, title: str = "what each cell is worth to F") -> go.Figure:
    """The objective's per-cell weights (rows, cols) as a heat map, walls masked."""
    figure = go.Figure(_grid_heatmap(weights, walls, name="weight", zmax=None, colorscale="Cividis", showscale=True))
    figure.update_layout(template="plotly_white", title=title, margin=dict(t=50, r=20), height=380)
    figure.update_yaxes(autorange="reversed", scaleanchor="x", title="row")
    figure.update_xaxes(constrain="domain", title="column")
    return figure
