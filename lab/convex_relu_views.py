"""Figures for the convex-ReLU notebook: decision boundaries of recovered networks on planar data."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from theory.convex_relu.problem import ReLUNetwork, with_bias

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def decision_boundary_figure(networks: dict[str, ReLUNetwork], X, y, *, resolution: int = 150) -> go.Figure:
    """Points of 2-D data coloured by label, and each network's boundary f(x) = 0 (networks take x with bias)."""
    X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"X: expected planar data of shape (n, 2), got {X.shape}")
    low, high = X.min(axis=0) - 0.5, X.max(axis=0) + 0.5
    g0, g1 = np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution)
    grid = with_bias(np.column_stack([a.ravel() for a in np.meshgrid(g0, g1)]))
    figure = go.Figure(layout=dict(template="plotly_white", margin=dict(t=50, r=20), title="decision boundaries"))
    for (label, network), colour in zip(networks.items(), COLOURS, strict=False):
        values = network(grid).reshape(resolution, resolution)
        figure.add_contour(
            x=g0, y=g1, z=values, contours=dict(start=0, end=0, size=1, coloring="none"),
            line=dict(color=colour, width=3), showscale=False, name=label, showlegend=True,
        )  # fmt: skip
    for label_value, symbol in ((1.0, "circle"), (-1.0, "x")):
        mask = y == label_value
        figure.add_scatter(
            x=X[mask, 0], y=X[mask, 1], mode="markers", marker=dict(symbol=symbol, size=7, color="gray"),
            name=f"y = {label_value:+.0f}",
        )  # fmt: skip
    figure.update_layout(xaxis_title="x1", yaxis=dict(title="x2", scaleanchor="x"))
    return figure
