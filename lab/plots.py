"""Figure builders: metrics (the store's long format) in, ``plotly.graph_objects.Figure`` out.

Pure functions, tested without a browser; panels wrap the same figures in a ``FigureWidget``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab.registry import Series

STEP = "step"
"""The x-alignment that plots a metric against the step it was logged at, rather than against another metric."""


def wide_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """One run's long metrics as a table: one row per step (sorted), one column per metric name, NaN where unlogged."""
    wide = metrics.pivot_table(index="step", columns="name", values="value", aggfunc="last", dropna=False)
    wide.columns.name = None
    return wide.sort_index()


def paired_points(wide: pd.DataFrame, x: str, y: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, x values, y values) at the steps where both ``x`` (a metric name, or :data:`STEP`) and ``y`` are
    logged; empty when either was never logged."""
    if y not in wide or (x != STEP and x not in wide):
        return np.empty(0, dtype=int), np.empty(0), np.empty(0)
    ys = wide[y]
    xs = pd.Series(wide.index.to_numpy(float), index=wide.index) if x == STEP else wide[x]
    both = xs.notna() & ys.notna()
    return wide.index[both].to_numpy(int), xs[both].to_numpy(float), ys[both].to_numpy(float)


def series_xy(metrics: pd.DataFrame, series: Series) -> tuple[np.ndarray, np.ndarray]:
    """The (x, y) points of ``series``: metric ``series.x`` against ``series.y`` at the steps logging both."""
    _, x, y = paired_points(wide_metrics(metrics[metrics["name"].isin([series.x, series.y])]), series.x, series.y)
    return x, y


def series_figure(
    metrics: pd.DataFrame | None,
    series: Sequence[Series],
    *,
    title: str = "",
    axis_titles: tuple[str, str] = ("", ""),
    run_labels: Mapping[int, str] | None = None,
    log_y: bool = False,
) -> go.Figure:
    """One line per (run, series). With ``metrics`` None or empty, empty lines keep the legend and axes."""
    figure = go.Figure(layout=dict(title=title, xaxis_title=axis_titles[0], yaxis_title=axis_titles[1]))
    figure.update_layout(template="plotly_white", legend=dict(orientation="h", y=-0.2), margin=dict(t=50, r=20))
    if log_y:
        figure.update_yaxes(type="log")
    runs = [None] if metrics is None or metrics.empty else sorted(metrics["run_id"].unique())
    for run_id in runs:
        frame = metrics[metrics["run_id"] == run_id] if run_id is not None else None
        for s in series:
            x, y = series_xy(frame, s) if frame is not None else (np.empty(0), np.empty(0))
            prefix = f"{(run_labels or {}).get(run_id, f'run {run_id}')}: " if len(runs) > 1 else ""
            figure.add_scatter(x=x, y=y, mode=s.mode, name=prefix + s.label)
    return figure
