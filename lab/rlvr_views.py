"""Figures for the small-LM RLVR notebook: pass@k curves on a log2 k axis (base against each policy, bootstrap bands
over prompts), the same split into majority / minority prompts, reward / held-out pass@1 / KL curves of several
rlvr-train runs side by side (static, or live while they train), and the level-0 model of :mod:`theory.rlvr_level0`
drawn with the same builders, and the exact reward-KL frontier of an rlvr-frontier run with rlvr-train trajectories on
it. Pure builders: a run's long metrics (``store.metrics(run_id)``) or a
:class:`~theory.rlvr_level0.Level0Run` in, plotly figure out; :func:`run_each` and :class:`LiveTrainingCurves` run
experiments and redraw a ``FigureWidget`` as they log.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab import registry
from lab.plots import paired_points, wide_metrics
from lab.runs import Run, RunStore
from theory.alignment import TradeoffCurve, frontier_reward
from theory.rlvr_level0 import Level0Run

COLOURS = ("#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
BASE_COLOUR = "#555555"
ALL_PROMPTS = "all prompts"
PROMPT_GROUPS = ("majority", "minority")
TRAINING_PANELS = {
    "reward": "train reward (batch pass@1)",
    "eval/pass@1": "held-out pass@1",
    "kl_to_ref": "KL to the base (nats / completion)",
}
PASS_AT_K_NAME = re.compile(r"pass@(\d+)(\.low|\.high)?")
METRIC_COLUMNS = ["step", "name", "value"]


@dataclass(frozen=True)
class PassAtK:
    """One pass@k curve: ``value`` at ``ks``, with the bootstrap interval ``low`` / ``high`` when there is one."""

    ks: np.ndarray
    value: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None


def _layout(title: str) -> dict:
    return dict(template="plotly_white", title=title, margin=dict(t=60, r=20), legend=dict(orientation="h", y=-0.25))


def _colours(labels: Sequence[str]) -> dict[str, str]:
    """``base`` in grey, the other labels in order."""
    others = iter(COLOURS * (len(labels) // len(COLOURS) + 1))
    return {label: BASE_COLOUR if label == "base" else next(others) for label in labels}


def _band_colour(colour: str, alpha: float = 0.18) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


# --------------------------------------------------------------------------------------------- reading runs


def eval_pass_at_k(
    metrics: pd.DataFrame, *, group: str | None = None, prefix: str = "", step: int | None = None
) -> PassAtK:
    """The pass@k curve in one run's long metrics at ``step`` (default: the last step that logged one):
    rlvr-eval's ``pass@{k}`` with ``pass@{k}.low`` / ``.high``, or ``{group}/pass@{k}`` for ``group`` "majority" /
    "minority" (no interval); ``prefix="eval/"`` reads an rlvr-train run's held-out evaluation instead."""
    stem = f"{prefix}{group}/" if group else prefix
    names = metrics["name"].str.removeprefix(stem)
    parsed = names.str.fullmatch(PASS_AT_K_NAME.pattern) & metrics["name"].str.startswith(stem)
    rows = metrics[parsed]
    if rows.empty:
        raise ValueError(f"metrics: no {stem}pass@k in this run (names like {stem}pass@1)")
    rows = rows[rows["step"] == (rows["step"].max() if step is None else step)]
    if rows.empty:
        raise ValueError(f"step: no {stem}pass@k logged at step {step}")
    parts = names[rows.index].str.extract(PASS_AT_K_NAME.pattern)
    table = pd.DataFrame({"k": parts[0].astype(int), "part": parts[1].fillna(""), "value": rows["value"]})
    wide = table.pivot_table(index="k", columns="part", values="value", aggfunc="last").sort_index()
    interval = {"low": None, "high": None}
    if {".low", ".high"} <= set(wide.columns):
        interval = {"low": wide[".low"].to_numpy(float), "high": wide[".high"].to_numpy(float)}
    return PassAtK(wide.index.to_numpy(), wide[""].to_numpy(float), **interval)


def eval_breakdown(metrics: pd.DataFrame, *, prefix: str = "", step: int | None = None) -> dict[str, PassAtK]:
    """``{"all prompts": ..., "majority": ..., "minority": ...}`` of one evaluation (the groups it logged)."""
    curves = {ALL_PROMPTS: eval_pass_at_k(metrics, prefix=prefix, step=step)}
    for group in PROMPT_GROUPS:
        if metrics["name"].str.startswith(f"{prefix}{group}/pass@").any():
            curves[group] = eval_pass_at_k(metrics, group=group, prefix=prefix, step=step)
    return curves


def level0_pass_at_k(run: Level0Run, step: int = -1) -> dict[str, PassAtK]:
    """The level-0 model's exact curves at ``step`` (0 = the base), keyed as :func:`eval_breakdown`'s."""
    curves = {ALL_PROMPTS: PassAtK(run.ks, run.overall[step])}
    return curves | {name: PassAtK(run.ks, run.pass_at_k[step, t]) for t, name in enumerate(run.type_names)}


def crossover_k(base: PassAtK, policy: PassAtK) -> int | None:
    """The smallest k (of those both curves have) at which ``policy``'s pass@k falls below ``base``'s; None if none."""
    ks, in_base, in_policy = np.intersect1d(base.ks, policy.ks, return_indices=True)
    below = policy.value[in_policy] < base.value[in_base]
    return int(ks[below.argmax()]) if below.any() else None


# --------------------------------------------------------------------------------------------- pass@k figures


def _add_pass_at_k(figure: go.Figure, curve: PassAtK, label: str, colour: str, *, col: int, legend: bool) -> None:
    ks = np.asarray(curve.ks, dtype=float)
    if curve.low is not None and curve.high is not None:
        figure.add_scatter(
            x=np.concatenate([ks, ks[::-1]]), y=np.concatenate([curve.high, curve.low[::-1]]), mode="lines",
            fill="toself", fillcolor=_band_colour(colour), line=dict(width=0), hoverinfo="skip", showlegend=False,
            legendgroup=label, name=f"{label} 95% interval", row=1, col=col,
        )  # fmt: skip
    dash = "dash" if label == "base" else None
    figure.add_scatter(
        x=ks, y=curve.value, mode="lines+markers", line=dict(color=colour, dash=dash), name=label, legendgroup=label,
        showlegend=legend, row=1, col=col,
    )  # fmt: skip


def _log2_axes(figure: go.Figure, ks: np.ndarray) -> None:
    ticks = np.unique(np.asarray(ks, dtype=int))
    figure.update_xaxes(type="log", tickvals=ticks, ticktext=[str(k) for k in ticks], title="k (log₂ scale)")
    figure.update_yaxes(range=[0, 1.02])
    figure.update_yaxes(title="pass@k", col=1)


def breakdown_figure(curves: Mapping[str, Mapping[str, PassAtK]], *, title: str = "pass@k by prompt type") -> go.Figure:
    """One panel per prompt group (the keys of the first policy's curves, e.g. all prompts / majority / minority),
    one line per policy (``curves[policy][group]``) on a log2 k axis, with its bootstrap band when it has one;
    ``base`` dashed grey, the same colour per policy in every panel."""
    if not curves:
        raise ValueError("curves: expected at least one policy")
    groups = list(next(iter(curves.values())))
    colours = _colours(list(curves))
    figure = make_subplots(rows=1, cols=len(groups), shared_yaxes=True, subplot_titles=groups)
    figure.update_layout(**_layout(title))
    all_ks = []
    for label, by_group in curves.items():
        missing = [group for group in groups if group not in by_group]
        if missing:
            raise ValueError(f"curves: {label!r} has no {missing[0]!r} curve; expected {groups}")
        for col, group in enumerate(groups, start=1):
            _add_pass_at_k(figure, by_group[group], label, colours[label], col=col, legend=col == 1)
            all_ks.append(by_group[group].ks)
    _log2_axes(figure, np.concatenate(all_ks))
    return figure


def pass_at_k_figure(curves: Mapping[str, PassAtK], *, title: str = "pass@k, base against RL") -> go.Figure:
    """One line per policy, pass@k against k on a log2 axis, with bootstrap bands (Yue et al. 2025's figure)."""
    return breakdown_figure({label: {ALL_PROMPTS: curve} for label, curve in curves.items()}, title=title)


def level0_figure(
    runs: Mapping[str, Level0Run], *, step: int = -1, title: str = "level 0: exact pass@k after RL"
) -> go.Figure:
    """:func:`breakdown_figure` of the level-0 base (step 0) and every method's policy at ``step``."""
    if not runs:
        raise ValueError("runs: expected at least one level-0 run")
    base = level0_pass_at_k(next(iter(runs.values())), 0)
    return breakdown_figure(
        {"base": base} | {name: level0_pass_at_k(run, step) for name, run in runs.items()}, title=title
    )


def level0_steps_figure(runs: Mapping[str, Level0Run], *, k: int = 16, title: str | None = None) -> go.Figure:
    """Against the update step, per method: the benchmark pass@1 (left) and the last prompt type's pass@``k``
    (right; the minority), the two sides of the crossover."""
    if not runs:
        raise ValueError("runs: expected at least one level-0 run")
    first = next(iter(runs.values()))
    if k not in first.ks:
        raise ValueError(f"k: expected one of the runs' ks {first.ks.tolist()}, got {k!r}")
    column = int(np.flatnonzero(first.ks == k)[0])
    minority = first.type_names[-1]
    panels = (f"pass@1, {ALL_PROMPTS}", f"pass@{k}, {minority} prompts")
    figure = make_subplots(rows=1, cols=2, subplot_titles=panels)
    figure.update_layout(**_layout(title or "level 0: pass@1 rises while the minority's pass@k falls"))
    colours = _colours(list(runs))
    for name, run in runs.items():
        steps = np.arange(run.overall.shape[0])
        for col, values in ((1, run.overall[:, 0]), (2, run.pass_at_k[:, -1, column])):
            figure.add_scatter(
                x=steps, y=values, mode="lines", line=dict(color=colours[name]), name=name, legendgroup=name,
                showlegend=col == 1, row=1, col=col,
            )  # fmt: skip
    figure.update_xaxes(title="update step")
    return figure


# --------------------------------------------------------------------------------------------- training curves


def trailing_mean(values, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each position (fewer at the start)."""
    values = np.asarray(values, dtype=float)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window: expected an integer >= 1, got {window!r}")
    sums = np.concatenate([[0.0], np.cumsum(values)])
    ends = np.arange(1, values.size + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def _training_traces(metrics_by_label: Mapping[str, pd.DataFrame], smooth: int):
    """(label, panel, steps, values) for every label and panel, in trace order; ``reward`` smoothed."""
    for label, metrics in metrics_by_label.items():
        for name in TRAINING_PANELS:
            rows = metrics[metrics["name"] == name].dropna(subset=["value"]).sort_values("step")
            values = rows["value"].to_numpy(float)
            yield (
                label,
                name,
                rows["step"].to_numpy(float),
                trailing_mean(values, smooth) if name == "reward" else values,
            )


def training_curves_figure(
    metrics_by_label: Mapping[str, pd.DataFrame], *, smooth: int = 1, title: str = "RL training side by side"
) -> go.Figure:
    """One panel per metric of :data:`TRAINING_PANELS` (batch reward, held-out pass@1, KL to the base) against the
    RL step, one colour per run (``metrics_by_label[label]`` = its long metrics: step, name, value); the noisy batch
    reward is a trailing mean over ``smooth`` steps."""
    figure = make_subplots(rows=1, cols=len(TRAINING_PANELS), subplot_titles=list(TRAINING_PANELS.values()))
    figure.update_layout(**_layout(title))
    colours = _colours(list(metrics_by_label))
    columns = {name: col for col, name in enumerate(TRAINING_PANELS, start=1)}
    for label, name, steps, values in _training_traces(metrics_by_label, smooth):
        figure.add_scatter(
            x=steps, y=values, mode="lines+markers" if name.startswith("eval/") else "lines",
            line=dict(color=colours[label]), name=label, legendgroup=label, showlegend=columns[name] == 1,
            row=1, col=columns[name],
        )  # fmt: skip
    figure.update_xaxes(title="RL step")
    return figure


def update_training_curves(figure: go.Figure, metrics_by_label: Mapping[str, pd.DataFrame], *, smooth: int = 1) -> None:
    """Set the traces of a :func:`training_curves_figure` built for the same labels, in one ``batch_update``."""
    traces = list(_training_traces(metrics_by_label, smooth))
    if len(traces) != len(figure.data):
        raise ValueError(f"metrics_by_label: {len(traces)} traces for a figure of {len(figure.data)}; same labels?")
    with figure.batch_update():
        for trace, (_, _, steps, values) in zip(figure.data, traces, strict=True):
            trace.x, trace.y = steps, values


class LiveTrainingCurves:
    """A ``FigureWidget`` of :func:`training_curves_figure` for the runs ``labels``, redrawn as followed runs log.

    ``follow(run, label)`` subscribes to a started :class:`~lab.runs.Run`; its rows are kept in memory and the
    figure is redrawn at most once per ``min_interval`` seconds, and by :meth:`redraw` (call it after the runs).
    ``redraws`` counts the redraws.
    """

    def __init__(
        self, labels: Sequence[str], *, smooth: int = 1, min_interval: float = 0.25, title: str = "RL training, live"
    ) -> None:
        if not min_interval >= 0:
            raise ValueError(f"min_interval: expected non-negative seconds, got {min_interval!r}")
        self.smooth, self.min_interval = smooth, float(min_interval)
        self._rows: dict[str, list[tuple[int, str, float | None]]] = {label: [] for label in labels}
        self.figure = go.FigureWidget(training_curves_figure(self.metrics(), smooth=smooth, title=title))
        self.redraws = 0
        self._last = -np.inf

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.figure)

    def metrics(self) -> dict[str, pd.DataFrame]:
        """The followed runs' rows so far, one long frame (step, name, value) per label."""
        return {label: pd.DataFrame(rows, columns=METRIC_COLUMNS) for label, rows in self._rows.items()}

    def follow(self, run: Run, label: str) -> None:
        if label not in self._rows:
            raise ValueError(f"label: expected one of {list(self._rows)}, got {label!r}")
        self._rows[label].clear()
        run.subscribe(lambda rows: self._collect(label, rows))

    def _collect(self, label: str, rows) -> None:
        self._rows[label].extend(row for row in rows if row[1] in TRAINING_PANELS)
        if time.monotonic() - self._last >= self.min_interval:
            self.redraw()

    def redraw(self) -> None:
        update_training_curves(self.figure, self.metrics(), smooth=self.smooth)
        self._last = time.monotonic()
        self.redraws += 1


def run_each(
    experiment: str,
    configs: Mapping[str, Mapping],
    *,
    store: RunStore,
    live: LiveTrainingCurves | None = None,
) -> dict[str, int]:
    """Run ``experiment`` once per labelled config (field values over its defaults), one after the other, and return
    {label: run_id}. Every config is validated before the first run starts; ``live`` follows each run."""
    spec = registry.get(experiment)
    checked = {label: spec.config(**values) for label, values in configs.items()}
    run_ids = {}
    for label, cfg in checked.items():
        cfg, run = spec.start(cfg, store=store)
        if live is not None:
            live.follow(run, label)
        run_ids[label] = spec.complete(cfg, run)
    if live is not None:
        live.redraw()
    return run_ids


# --------------------------------------------------------------------------------------------- the KL frontier


@dataclass(frozen=True)
class Frontier:
    """An rlvr-frontier run read back: the tilted frontier and common-N best-of-N (``TradeoffCurve``s, KL
    ascending), and the base's ``base_reward`` and the conditioned base's ``conditioned`` = (KL, reward)."""

    tilted: TradeoffCurve
    best_of_n: TradeoffCurve
    base_reward: float
    conditioned: tuple[float, float]


def load_frontier(metrics: pd.DataFrame) -> Frontier:
    """Parse an rlvr-frontier run's long metrics (``store.metrics(run_id)``)."""
    wide = wide_metrics(metrics)

    def curve(prefix: str, parameter: str) -> TradeoffCurve:
        _, kl, reward = paired_points(wide, f"{prefix}.kl_to_ref", f"{prefix}.reward")
        _, _, values = paired_points(wide, f"{prefix}.kl_to_ref", f"{prefix}.{parameter}")
        order = np.argsort(kl, kind="stable")
        return TradeoffCurve(parameter=values[order], kl=kl[order], reward=reward[order])

    first = wide.loc[0]
    return Frontier(
        tilted=curve("tilted", "beta"),
        best_of_n=curve("best_of_n", "n"),
        base_reward=float(first["reward"]),
        conditioned=(float(first["conditioned.kl_to_ref"]), float(first["conditioned.reward"])),
    )


def training_trajectory(metrics: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, held-out KL to the base, held-out pass@1) of an rlvr-train run: its ``eval/`` points."""
    return paired_points(wide_metrics(metrics), "eval/kl_to_ref", "eval/pass@1")


def frontier_gaps(frontier: Frontier, runs: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per rlvr-train run, its last held-out point (KL, pass@1), the frontier's reward at that KL and the gap
    frontier - run (>= 0 up to estimation noise: nothing beats the frontier at equal KL)."""
    rows = []
    for label, metrics in runs.items():
        steps, kl, reward = training_trajectory(metrics)
        best = float(frontier_reward(frontier.tilted, kl[-1]))
        rows.append({"run": label, "step": int(steps[-1]), "kl_to_ref": kl[-1], "reward": reward[-1],
                     "frontier_reward": best, "gap": best - reward[-1]})  # fmt: skip
    return pd.DataFrame(rows)


def frontier_figure(
    frontier: Frontier, runs: Mapping[str, pd.DataFrame] | None = None, *, title: str = "reward against KL to the base"
) -> go.Figure:
    """The frontier phi_beta, best-of-N, the base and the conditioned base, and each run's held-out trajectory
    (KL, pass@1) from its first evaluation (the base) to its last, on one pair of axes."""
    figure = go.Figure(layout=_layout(title))
    figure.update_layout(xaxis_title="KL to the base (nats)", yaxis_title="reward (held-out pass@1)")
    figure.add_scatter(
        x=frontier.tilted.kl, y=frontier.tilted.reward, mode="lines", name="frontier φ_β ∝ p·exp(r/β)",
        line=dict(color="black"),
    )  # fmt: skip
    figure.add_scatter(
        x=frontier.best_of_n.kl, y=frontier.best_of_n.reward, mode="lines+markers", name="best-of-N",
        line=dict(color=BASE_COLOUR, dash="dot"), text=[f"N = {n:g}" for n in frontier.best_of_n.parameter],
    )  # fmt: skip
    figure.add_scatter(
        x=[0.0, frontier.conditioned[0]], y=[frontier.base_reward, frontier.conditioned[1]], mode="markers",
        marker=dict(color="black", symbol=["circle-open", "star"], size=11), name="base · base | correct",
    )  # fmt: skip
    for (label, metrics), colour in zip((runs or {}).items(), COLOURS * 4, strict=False):
        _, kl, reward = training_trajectory(metrics)
        figure.add_scatter(x=kl, y=reward, mode="lines+markers", name=label, line=dict(color=colour))
    return figure
