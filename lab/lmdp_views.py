"""Figures for the latent-MDP notebook: cumulative regret on log-log axes with each learner's fitted slope and
the reference rates K^(1/2) and K, and the value-of-information chart V_Markov <= V* <= V_oracle with its gaps.
Pure builders: arrays in, plotly figures out (a stored run's arrays come from
:func:`lab.experiments.latent_mdp.load_results`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from theory.lmdp import ReferenceValues

COLOURS = ("#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd")
REFERENCE_RATES = (0.5, 1.0)


def regret_figure(
    episodes,
    curves: Mapping[str, np.ndarray],
    slopes: Mapping[str, float] | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    title: str = "cumulative regret",
) -> go.Figure:
    """Per learner, the mean over seeds of the cumulative regret ``curves[learner]`` (n_seeds, P) at ``episodes``
    (P,) on log-log axes, the seeds' range shaded, the log-log ``slopes[learner]`` in its legend entry; and the
    rates c K^(1/2) and c K as dashed lines through the highest curve's first positive point."""
    episodes = np.asarray(episodes, dtype=float)
    figure = go.Figure(layout=dict(template="plotly_white", title=title, margin=dict(t=50, r=20)))
    anchor = None
    for (name, values), colour in zip(curves.items(), COLOURS, strict=False):
        values = np.atleast_2d(np.asarray(values, dtype=float))
        if values.shape[1] != episodes.size:
            raise ValueError(f"curves: {name!r} has {values.shape[1]} points, expected {episodes.size}")
        mean = values.mean(axis=0)
        label = (labels or {}).get(name, name)
        slope = (slopes or {}).get(name)
        if slope is not None and np.isfinite(slope):
            label = f"{label}, slope {slope:.2f}"
        if values.shape[0] > 1:
            figure.add_scatter(
                x=np.concatenate([episodes, episodes[::-1]]),
                y=np.concatenate([values.max(axis=0), values.min(axis=0)[::-1]]),
                fill="toself", fillcolor=colour, opacity=0.15, line=dict(width=0), hoverinfo="skip",
                showlegend=False, name=f"{label} (seed range)",
            )  # fmt: skip
        figure.add_scatter(x=episodes, y=mean, mode="lines", line=dict(color=colour), name=label)
        positive = np.flatnonzero(mean > 0)
        if positive.size and (anchor is None or mean[positive[0]] > anchor[1]):
            anchor = (episodes[positive[0]], mean[positive[0]])
    if anchor is not None and episodes.size:
        span = np.geomspace(anchor[0], episodes.max(), 50)
        for rate in REFERENCE_RATES:
            figure.add_scatter(
                x=span, y=anchor[1] * (span / anchor[0]) ** rate, mode="lines",
                line=dict(color="gray", dash="dash" if rate == 1 else "dot"), name=f"∝ K^{rate:g}",
            )  # fmt: skip
    figure.update_xaxes(type="log", title="episodes K")
    figure.update_yaxes(type="log", title="cumulative regret")
    return figure


def value_gap_figure(values: Mapping[str, ReferenceValues]) -> go.Figure:
    """Left: V_Markov, V* and V_oracle per instance (grouped bars). Right: the gaps V* - V_Markov (what memory of
    the episode is worth) and V_oracle - V* (what knowing the context up front is worth). A missing V_Markov (too
    many Markov policies to enumerate) leaves its bar and gap out."""
    names = list(values)
    if not names:
        raise ValueError("values: expected at least one instance")
    markov = [np.nan if values[n].markov is None else values[n].markov for n in names]
    optimal = [values[n].optimal for n in names]
    oracle = [values[n].oracle for n in names]
    figure = make_subplots(rows=1, cols=2, subplot_titles=("values", "value-of-information gaps"))
    for label, series, colour in (
        ("V_Markov (best Markov policy)", markov, "#7f7f7f"),
        ("V* (best history policy)", optimal, "#1f77b4"),
        ("V_oracle (context known)", oracle, "#2ca02c"),
    ):
        figure.add_bar(
            x=names, y=series, name=label, marker_color=colour, text=[f"{v:.3f}" for v in series], row=1, col=1
        )
    for label, series, colour in (
        ("V* − V_Markov", np.subtract(optimal, markov), "#9467bd"),
        ("V_oracle − V*", np.subtract(oracle, optimal), "#ff7f0e"),
    ):
        figure.add_bar(
            x=names, y=series, name=label, marker_color=colour, text=[f"{v:.3f}" for v in series], row=1, col=2
        )
    figure.update_layout(template="plotly_white", barmode="group", margin=dict(t=60, r=20), height=380)
    figure.update_yaxes(title="value (total reward ≤ 1)", row=1, col=1)
    figure.update_yaxes(title="gap", row=1, col=2)
    return figure
