"""Figures for the preference-games notebook: KL / certificate / exploitability curves per method with Nash-MP's
certified rate beside the measured one, policies as bar charts (and an in-place animation of a stepping solver),
SEA regret curves and the final-regret scatter against sqrt(sigma^2) + sqrt(Sigma^2), and the natural residual of
the finite-sum solvers against epochs. Pure builders: arrays in, plotly figures out (a stored run's arrays come from
the ``load_results`` of :mod:`lab.experiments.nash_learning`, :mod:`~lab.experiments.sea_regret` and
:mod:`~lab.experiments.vr_halpern`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go

from theory.solver import IterationState, LoopOutcome, iterate

COLOURS = ("#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
CONVERGENCE_X = {"queries": "queries", "iterations": "iteration", "seconds": "seconds"}
CONVERGENCE_Y = {
    "kl": "KL(π* ‖ π)",
    "certificate": "certificate ½·span(r)² ≥ KL(π* ‖ π)",
    "exploitability": "exploitability β·KL(π ‖ BR(π)) (half the duality gap)",
}
X_TITLES = {"queries": "preference queries N", "iterations": "iterations", "seconds": "solver seconds"}
RESIDUAL_X = {"epochs": "epochs (N oracle calls)", "oracle_calls": "oracle calls"}


def _layout(title: str) -> dict:
    return dict(template="plotly_white", title=title, margin=dict(t=50, r=20), legend=dict(orientation="h", y=-0.2))


def _label(name: str, labels: Mapping[str, str] | None) -> str:
    return (labels or {}).get(name, name)


def _choice(value: str, options, name: str) -> str:
    if value not in options:
        raise ValueError(f"{name}: expected one of {tuple(options)}, got {value!r}")
    return value


def per_query_factor(queries, values) -> float:
    """The measured contraction per query, (v_last / v_first)^(1 / (N_last - N_first)) over the positive values;
    NaN with fewer than two of them."""
    queries, values = np.asarray(queries, dtype=float), np.asarray(values, dtype=float)
    positive = np.flatnonzero(values > 0)
    if positive.size < 2 or queries[positive[-1]] == queries[positive[0]]:
        return float("nan")
    first, last = positive[0], positive[-1]
    return float((values[last] / values[first]) ** (1 / (queries[last] - queries[first])))


# --------------------------------------------------------------------------------------------- Nash learning


def convergence_figure(
    curves: Mapping[str, Mapping[str, np.ndarray]],
    *,
    x: str = "queries",
    y: str = "kl",
    beta: float | None = None,
    labels: Mapping[str, str] | None = None,
    title: str = "distance to the regularised equilibrium",
) -> go.Figure:
    """One line per method of ``curves[method][y]`` against ``x`` ("queries", "iterations" or "seconds") on a log
    y axis (non-positive values left out), each legend entry with the measured factor per query. A curve with a
    ``bound`` array (Nash-MP's (1+2β)^(−N/2)·KL₀, logged beside its KL) adds that bound as a dashed line in the
    same colour, labelled with the theoretical factor (1+2``beta``)^(−1/2) per query when ``beta`` is given."""
    x_key = CONVERGENCE_X[_choice(x, CONVERGENCE_X, "x")]
    _choice(y, CONVERGENCE_Y, "y")
    figure = go.Figure(layout=_layout(title))
    for (name, curve), colour in zip(curves.items(), COLOURS, strict=False):
        xs, ys = np.asarray(curve[x_key], dtype=float), np.asarray(curve[y], dtype=float)
        if xs.shape != ys.shape:
            raise ValueError(f"curves: {name!r} has {xs.size} {x_key} values and {ys.size} {y} values")
        factor = per_query_factor(curve["queries"], ys)
        label = _label(name, labels) + (f" (×{factor:.3f} per query)" if np.isfinite(factor) else "")
        shown = ys > 0
        figure.add_scatter(x=xs[shown], y=ys[shown], mode="lines", line=dict(color=colour), name=label)
        if "bound" in curve and y == "kl":
            rate = f": ×{(1 + 2 * beta) ** -0.5:.3f} per query" if beta is not None else ""
            figure.add_scatter(
                x=xs, y=np.asarray(curve["bound"], dtype=float), mode="lines", line=dict(color=colour, dash="dash"),
                name=f"{_label(name, labels)} theory (1+2β)^(−N/2)·KL₀{rate}",
            )  # fmt: skip
    figure.update_xaxes(title=X_TITLES[x])
    figure.update_yaxes(type="log", title=CONVERGENCE_Y[y], exponentformat="power")
    return figure


def policy_bars_figure(policies: Mapping[str, np.ndarray], *, title: str = "policies") -> go.Figure:
    """Grouped bars: one trace per named policy (e.g. π*, μ, each method's current policy), one bar per action."""
    arrays = {name: np.asarray(policy, dtype=float) for name, policy in policies.items()}
    sizes = {policy.shape for policy in arrays.values()}
    if not arrays or len(sizes) != 1 or len(next(iter(sizes))) != 1:
        raise ValueError(f"policies: expected 1-D policies over the same actions, got shapes {sorted(sizes)}")
    figure = go.Figure(layout=_layout(title) | dict(barmode="group", bargap=0.15))
    actions = np.arange(next(iter(sizes))[0])
    for (name, policy), colour in zip(arrays.items(), COLOURS, strict=False):
        figure.add_bar(x=actions, y=policy, name=name, marker_color=colour)
    figure.update_xaxes(title="action y")
    figure.update_yaxes(title="probability")
    return figure


def update_policy_bars(figure: go.Figure, policies: Mapping[str, np.ndarray], title: str | None = None) -> None:
    """Set the bars of the named traces (and the title) in place, in one ``batch_update`` (a FigureWidget redraws
    once)."""
    traces = {trace.name: trace for trace in figure.data}
    unknown = sorted(set(policies) - set(traces))
    if unknown:
        raise ValueError(f"policies: no bar trace named {unknown[0]!r}; the figure has {sorted(traces)}")
    with figure.batch_update():
        for name, policy in policies.items():
            policy = np.asarray(policy, dtype=float)
            if policy.shape != (len(traces[name].y),):
                raise ValueError(f"policies: {name!r} has shape {policy.shape}, the bars {len(traces[name].y)}")
            traces[name].y = policy
        if title is not None:
            figure.layout.title.text = title


class PolicyAnimation:
    """Steps a solver (a :mod:`theory.games.nash` class) and redraws one bar trace with its current policy.

    ``animation.run(solver, max_iter=...)`` drives :func:`theory.solver.iterate` with itself as the callback: the
    trace ``name`` of ``figure`` (a ``go.FigureWidget`` in a notebook) gets the solver's policy at most once per
    ``min_interval`` seconds and always at the last iteration, with the iteration, queries and (when the solver
    has a target) KL in the title. ``delay`` seconds of sleep per iteration slow a fast solver down to watch it.
    ``redraws`` counts the redraws.
    """

    def __init__(self, figure: go.Figure, name: str, *, min_interval: float = 0.1, delay: float = 0.0) -> None:
        if name not in {trace.name for trace in figure.data}:
            raise ValueError(f"name: the figure has no bar trace named {name!r}")
        if not (min_interval >= 0 and delay >= 0):
            raise ValueError(f"min_interval: expected non-negative seconds, got {min_interval!r} and delay {delay!r}")
        self.figure, self.name, self.min_interval, self.delay = figure, name, float(min_interval), float(delay)
        self.redraws = 0
        self._last = -np.inf
        self._max_iter = None

    def __call__(self, state: IterationState) -> None:
        now = time.monotonic()
        last = state.solver.converged or state.n_iter == self._max_iter
        if last or now - self._last >= self.min_interval:
            self.redraw(state.solver, state.metrics)
            self._last = now
        if self.delay:
            time.sleep(self.delay)

    def redraw(self, solver, metrics: Mapping[str, float] | None = None) -> None:
        metrics = metrics or {}
        text = f"{self.name}: iteration {solver.n_iter}, {solver.queries} queries"
        if "kl" in metrics:
            text += f", KL(π* ‖ π) = {metrics['kl']:.2e}"
        update_policy_bars(self.figure, {self.name: solver.policy}, title=text)
        self.redraws += 1

    def run(self, solver, *, max_iter: int) -> LoopOutcome:
        """Draw the starting policy, then step ``solver`` up to ``max_iter`` times, redrawing as it goes."""
        self._max_iter, self._last = max_iter, time.monotonic()
        self.redraw(solver)
        return iterate(solver, max_iter=max_iter, callback=self)


# --------------------------------------------------------------------------------------------- SEA regret


def fit_line(x, y) -> tuple[float, float, float]:
    """Least squares y ~ a + b x: (intercept a, slope b, R^2)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"x: expected two 1-D arrays of the same length >= 2, got shapes {x.shape} and {y.shape}")
    design = np.column_stack([np.ones_like(x), x])
    (intercept, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
    spread = np.sum((y - y.mean()) ** 2)
    r_squared = 1 - np.sum((y - design @ [intercept, slope]) ** 2) / spread if spread > 0 else float("nan")
    return float(intercept), float(slope), float(r_squared)


def regret_curves_figure(
    rounds,
    curves: Mapping[str, np.ndarray],
    *,
    labels: Mapping[str, str] | None = None,
    title: str = "regret R_t = Σ f_s(x_s) − min_x Σ f_s(x)",
) -> go.Figure:
    """Regret against the round t, one line per learner (``curves[learner]`` aligned with ``rounds``)."""
    rounds = np.asarray(rounds, dtype=float)
    figure = go.Figure(layout=_layout(title))
    for (name, regret), colour in zip(curves.items(), COLOURS, strict=False):
        regret = np.asarray(regret, dtype=float)
        if regret.shape != rounds.shape:
            raise ValueError(f"curves: {name!r} has {regret.size} points, expected {rounds.size}")
        figure.add_scatter(x=rounds, y=regret, mode="lines", line=dict(color=colour), name=_label(name, labels))
    figure.update_xaxes(title="round t")
    figure.update_yaxes(title="regret")
    return figure


def regret_scatter_figure(
    bound_scale,
    final_regret: Mapping[str, np.ndarray],
    *,
    labels: Mapping[str, str] | None = None,
    title: str = "final regret against √σ²₁:T + √Σ²₁:T",
) -> go.Figure:
    """Per learner, its final regrets against the bound scale (markers) and the least-squares line through them
    (dashed, slope and R² in the legend)."""
    scale = np.asarray(bound_scale, dtype=float)
    span = np.linspace(0.0, scale.max(initial=0.0), 50)
    figure = go.Figure(layout=_layout(title))
    for (name, regret), colour in zip(final_regret.items(), COLOURS, strict=False):
        regret = np.asarray(regret, dtype=float)
        intercept, slope, r_squared = fit_line(scale, regret)
        figure.add_scatter(x=scale, y=regret, mode="markers", marker=dict(color=colour), name=_label(name, labels))
        figure.add_scatter(
            x=span, y=intercept + slope * span, mode="lines", line=dict(color=colour, dash="dash"),
            name=f"fit: {intercept:.2f} + {slope:.3f}·scale, R² = {r_squared:.3f}",
        )  # fmt: skip
    figure.update_xaxes(title="√σ²₁:T + √Σ²₁:T")
    figure.update_yaxes(title="final regret R_T")
    return figure


# --------------------------------------------------------------------------------------------- VR-Halpern


def residual_figure(
    curves: Mapping[str, Mapping[str, np.ndarray]],
    *,
    x: str = "epochs",
    labels: Mapping[str, str] | None = None,
    title: str = "natural residual ‖u − P(u − F(u))‖",
) -> go.Figure:
    """``curves[method]["residual"]`` against ``x`` ("epochs" or "oracle_calls") on log-log axes; points where
    either is zero (the start, or an exact solution) cannot be drawn there and are left out."""
    x = _choice(x, RESIDUAL_X, "x")
    figure = go.Figure(layout=_layout(title))
    for (name, curve), colour in zip(curves.items(), COLOURS, strict=False):
        xs, residual = np.asarray(curve[x], dtype=float), np.asarray(curve["residual"], dtype=float)
        shown = (xs > 0) & (residual > 0)
        figure.add_scatter(
            x=xs[shown], y=residual[shown], mode="lines", line=dict(color=colour), name=_label(name, labels)
        )
    figure.update_xaxes(type="log", title=RESIDUAL_X[x])
    figure.update_yaxes(type="log", title="natural residual", exponentformat="power")
    return figure
