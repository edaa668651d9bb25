"""Side by side: runs of any experiment, theory or LLM, as curves on one plotly figure.

Every function here is pure: the store's frames (``store.runs()``, ``store.metrics(run_ids)``) in, tables or a
``plotly.graph_objects.Figure`` out. :class:`lab.widgets.Compare` puts controls on top of them.

1. **Metric keys.** Metric names are shared across kinds where the quantity is the same, and prefixed by the curve
   they belong to (``tilted.reward``, ``nash_mp.kl``). A key matches the metric of that name and every
   ``<curve>.<key>`` (:func:`matching_metrics`): ``reward`` picks an LLM run's ``reward`` and alignment-tradeoff's
   ``tilted.reward``, ``best_of_n.reward``, ... :func:`metric_keys` lists the keys a run offers.
2. **x-alignment.** A curve plots its y metric against the step, or against another metric at the same steps. The x
   metric is looked up in the y metric's curve first, then as given (:func:`resolve_x`): y ``nash_mp.kl`` with x
   ``queries`` uses ``nash_mp.queries``; an LLM run's ``reward`` with x ``kl_to_ref`` uses ``kl_to_ref``.
3. **Seed bands.** Runs of one experiment whose configs differ only in ``seed`` form a group (:func:`seed_groups`).
   :func:`seed_band` gives, per step, the mean of y over the n seeds that logged it and a Student-t confidence
   interval ``mean ± t_{(1+level)/2, n-1} · s / sqrt(n)`` (s: the sample standard deviation, ddof = 1; no interval
   when n = 1), with x the seeds' mean x at that step.
4. **Theory.** :data:`THEORY_CURVES` maps (experiment, metric) to the closed form that metric follows, computed
   from the run's config and metrics. Add an entry to overlay a new one.
5. :func:`comparison_figure` draws runs (or seed groups as mean ± band) and their theory curves (dashed);
   :func:`export_figure` writes self-contained HTML, or PNG / SVG / PDF through kaleido and a Chrome or Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative
from scipy import stats

from lab import registry
from lab.config import fields, make_config
from lab.experiments.alignment_tradeoff import AlignmentTradeoffConfig, make_instance
from lab.experiments.nash_learning import nash_mp_bound
from lab.plots import STEP, paired_points, wide_metrics
from theory import alignment

BAND_COLUMNS = ["step", "x", "mean", "low", "high", "n"]
IMAGE_FORMATS = ("png", "svg", "pdf")
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
KALEIDO_PIN = "kaleido==1.5.0"
PALETTE = qualitative.Plotly


# --------------------------------------------------------------------------- metric names


def curve_of(name: str) -> str:
    """The curve a metric belongs to: ``"tilted"`` for ``"tilted.reward"``, ``""`` for an unprefixed name."""
    curve, dot, _ = name.partition(".")
    return curve if dot else ""


def local_name(name: str) -> str:
    """The metric's name within its curve: ``"reward"`` for ``"tilted.reward"`` and for ``"reward"``."""
    curve, dot, rest = name.partition(".")
    return rest if dot else curve


def metric_keys(names: Iterable[str]) -> set[str]:
    """The keys that select metrics among ``names``: every name and every name within its curve."""
    names = list(names)
    return set(names) | {local_name(name) for name in names}


def matching_metrics(names: Iterable[str], key: str) -> list[str]:
    """The metrics among ``names`` that ``key`` selects: ``key`` itself and every ``<curve>.<key>``, sorted."""
    return sorted(name for name in set(names) if name == key or (curve_of(name) and local_name(name) == key))


def resolve_x(names: Collection[str], y: str, x: str) -> str | None:
    """The x metric paired with metric ``y``: :data:`~lab.plots.STEP`, ``<curve of y>.<x>`` when logged, else ``x``
    when logged, else None (the curve cannot be drawn against that x)."""
    if x == STEP:
        return STEP
    in_curve = f"{curve_of(y)}.{x}" if curve_of(y) else None
    if in_curve in names:
        return in_curve
    return x if x in names else None


# --------------------------------------------------------------------------- seeds


def seed_groups(runs: pd.DataFrame) -> list[list[int]]:
    """Run ids grouped by experiment and config minus ``seed`` (runs that differ only by seed), in id order."""
    groups: dict[tuple[str, str], list[int]] = {}
    for row in runs.sort_values("id").itertuples():
        others = {key: value for key, value in row.config.items() if key != "seed"}
        groups.setdefault((row.experiment, json.dumps(others, sort_keys=True)), []).append(int(row.id))
    return list(groups.values())


def _band(wides: Mapping[int, pd.DataFrame], y: str, x: str, level: float) -> pd.DataFrame:
    """:func:`seed_band` on runs already in wide form (run id -> :func:`lab.plots.wide_metrics`)."""
    if not 0 < level < 1:
        raise ValueError(f"level: expected a confidence level in (0, 1), got {level!r}")
    points = []
    for wide in wides.values():
        x_name = resolve_x(wide.columns, y, x)
        if x_name is not None:
            steps, xs, ys = paired_points(wide, x_name, y)
            points.append(pd.DataFrame({"step": steps, "x": xs, "y": ys}))
    if not points:
        return pd.DataFrame(columns=BAND_COLUMNS)
    by_step = pd.concat(points).groupby("step")
    n = by_step["y"].count()
    mean = by_step["y"].mean()
    with np.errstate(invalid="ignore"):  # one seed: t with 0 degrees of freedom is NaN, and so is the band
        half_width = stats.t.ppf((1 + level) / 2, n - 1) * by_step["y"].std(ddof=1) / np.sqrt(n)
    band = pd.DataFrame(
        {"x": by_step["x"].mean(), "mean": mean, "low": mean - half_width, "high": mean + half_width, "n": n}
    )
    return band.reset_index()[BAND_COLUMNS]


def seed_band(metrics: pd.DataFrame, y: str, *, x: str = STEP, level: float = 0.95) -> pd.DataFrame:
    """Mean and Student-t ``level`` confidence interval of metric ``y`` over runs, per step.

    ``metrics``: the long metrics of the runs (``store.metrics(run_ids)``, e.g. one seed group of a sweep). ``x``:
    :data:`~lab.plots.STEP` or a metric, resolved per run as in :func:`resolve_x`. Returns a frame with columns
    ``step``, ``x`` (mean over the runs), ``mean``, ``low``, ``high`` (NaN where only one run logged the step)
    and ``n`` (runs that logged it), sorted by step.
    """
    wides = {int(run_id): wide_metrics(frame) for run_id, frame in metrics.groupby("run_id")}
    return _band(wides, y, x, level)


# --------------------------------------------------------------------------- theory curves


@dataclass(frozen=True)
class TheoryCurve:
    """The closed form a logged metric follows. ``values(config, wide)`` takes a run's config (a dict) and its wide
    metrics (:func:`lab.plots.wide_metrics`) and returns exact values per step (the index) under the run's own
    metric names: the y metric, and its x metrics where those are exact too."""

    label: str
    values: Callable[[dict[str, Any], pd.DataFrame], pd.DataFrame]


def _nash_mp_bound(config: dict[str, Any], wide: pd.DataFrame) -> pd.DataFrame:
    """KL(pi* || pi_N) <= (1 + 2 beta)^(-N/2) KL(pi* || pi_0) after N queries; pi_0's KL is the one at step 0."""
    queries = wide["nash_mp.queries"].dropna()
    initial_kl = float(wide["nash_mp.kl"].dropna().iloc[0])
    bound = nash_mp_bound(queries.to_numpy(), config["beta"], initial_kl)
    return pd.DataFrame({"nash_mp.kl": bound}, index=queries.index)


def _alignment_instance(config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    return make_instance(make_config(AlignmentTradeoffConfig, config))


def _exact_tilted(config: dict[str, Any], wide: pd.DataFrame) -> pd.DataFrame:
    """Under each Monte-Carlo point of phi_beta, the exact (KL, reward) at its beta (``tilted.beta``)."""
    betas = wide["tilted.beta"].dropna()
    exact = alignment.tilted_curve(*_alignment_instance(config), betas.to_numpy())
    return pd.DataFrame({"tilted_mc.kl_to_ref": exact.kl, "tilted_mc.reward": exact.reward}, index=betas.index)


def _exact_best_of_n(config: dict[str, Any], wide: pd.DataFrame) -> pd.DataFrame:
    """Under each Monte-Carlo point of best-of-N, the exact (KL, reward) for its N (the step)."""
    ns = wide["best_of_n_mc.reward"].dropna().index
    exact = alignment.best_of_n_curve(*_alignment_instance(config), ns.to_numpy())
    return pd.DataFrame({"best_of_n_mc.kl_to_ref": exact.kl, "best_of_n_mc.reward": exact.reward}, index=ns)


THEORY_CURVES: dict[tuple[str, str], TheoryCurve] = {
    ("nash-learning", "nash_mp.kl"): TheoryCurve("Nash-MP bound (1+2β)^(−N/2)·KL₀", _nash_mp_bound),
    ("alignment-tradeoff", "tilted_mc.reward"): TheoryCurve("exact φβ ∝ p·exp(r/β)", _exact_tilted),
    ("alignment-tradeoff", "best_of_n_mc.reward"): TheoryCurve("exact best-of-N", _exact_best_of_n),
}
"""(experiment, metric) -> its closed form; :func:`comparison_figure` draws it dashed under the run's curve."""


def with_theory(experiment: str, y: str, config: dict[str, Any], wide: pd.DataFrame) -> pd.DataFrame | None:
    """The run's wide metrics with the exact values of :data:`THEORY_CURVES` in place of the logged ones (so x
    metrics that the theory does not give still pair by step); None when metric ``y`` has no theory curve."""
    theory = THEORY_CURVES.get((experiment, y))
    if theory is None or y not in wide:
        return None
    exact = theory.values(config, wide)
    return wide.drop(columns=exact.columns, errors="ignore").join(exact, how="outer")


# --------------------------------------------------------------------------- labels


def key_config(experiment: str, config: Mapping[str, Any]) -> str:
    """The config values that differ from the experiment's defaults, as ``"k=v, ..."`` (all of them when the
    experiment is not registered in this process)."""
    try:
        defaults = {spec.name: spec.default for spec in fields(registry.get(experiment).config_cls)}
    except ValueError:
        defaults = {}
    return ", ".join(f"{key}={value}" for key, value in config.items() if defaults.get(key, object()) != value)


def run_label(row: Any) -> str:
    """One line per run for pickers: ``#id experiment [kind, status] key config``."""
    changed = key_config(row.experiment, row.config)
    return f"#{row.id} {row.experiment} [{row.kind}, {row.status}]" + (f" {changed}" if changed else "")


def _group_label(rows: pd.DataFrame) -> str:
    first = rows.iloc[0]
    if len(rows) == 1:
        return f"#{first.id} {first.experiment}"
    seeds = ",".join(str(config.get("seed")) for config in rows["config"])
    return f"{first.experiment} seeds {seeds} (#{rows['id'].min()}–#{rows['id'].max()})"


# --------------------------------------------------------------------------- the figure


def drawing_mode(experiment: str, y: str) -> str:
    """How the experiment's own panel draws metric ``y`` (its :class:`lab.registry.Series` mode, e.g. markers for a
    Monte-Carlo estimate), else ``"lines"``."""
    try:
        series = registry.get(experiment).series
    except ValueError:
        return "lines"
    return next((s.mode for s in series if s.y == y), "lines")


def _rgba(color: str, alpha: float) -> str:
    red, green, blue = hex_to_rgb(color)
    return f"rgba({red}, {green}, {blue}, {alpha})"


def comparison_figure(
    runs: pd.DataFrame,
    metrics: pd.DataFrame,
    keys: Sequence[str],
    *,
    x: str = STEP,
    group_seeds: bool = True,
    theory: bool = True,
    level: float = 0.95,
    log_x: bool = False,
    log_y: bool = False,
    title: str = "",
) -> go.Figure:
    """Curves of the metrics selected by ``keys`` (:func:`matching_metrics`) for every run in ``runs``, on one figure.

    ``runs``: rows of ``store.runs()``; ``metrics``: their long metrics. ``x``: :data:`~lab.plots.STEP` or a metric
    (:func:`resolve_x`). With ``group_seeds``, runs that differ only by seed become one mean line and a ``level``
    band (:func:`seed_band`). Curves are drawn as the experiment's panel draws them (:func:`drawing_mode`). With
    ``theory``, each metric of :data:`THEORY_CURVES` gets its closed form, dashed (a seed group: the mean over its
    seeds). Every trace carries ``meta``: its ``role`` (run, mean, band or theory), ``runs``, ``metric`` and the
    ``x`` it was drawn against.
    """
    figure = go.Figure(layout=dict(title=title, xaxis_title=x, yaxis_title=", ".join(keys)))
    figure.update_layout(template="plotly_white", legend=dict(orientation="h", y=-0.2), margin=dict(t=50, r=20))
    if log_x:
        figure.update_xaxes(type="log")
    if log_y:
        figure.update_yaxes(type="log")
    by_id = runs.set_index("id", drop=False)
    wides = {int(run_id): wide_metrics(frame) for run_id, frame in metrics.groupby("run_id")}
    empty = pd.DataFrame(columns=["step", "name", "value"])
    units = seed_groups(runs) if group_seeds else [[int(run_id)] for run_id in runs["id"]]
    curve = 0
    for unit in units:
        rows = by_id.loc[unit]
        unit_wides = {run_id: wides.get(run_id, wide_metrics(empty)) for run_id in unit}
        names = set().union(*(wide.columns for wide in unit_wides.values()))
        experiment, label = rows.iloc[0].experiment, _group_label(rows)
        for y in dict.fromkeys(name for key in keys for name in matching_metrics(names, key)):
            band = _band(unit_wides, y, x, level)
            if band.empty:  # not logged against this x
                continue
            color = PALETTE[curve % len(PALETTE)]
            curve += 1
            meta = {"runs": unit, "metric": y}
            if len(unit) > 1:
                ranged = band.dropna(subset=["low", "high"])
                figure.add_scatter(
                    x=np.concatenate([ranged["x"], ranged["x"][::-1]]),
                    y=np.concatenate([ranged["high"], ranged["low"][::-1]]),
                    fill="toself", fillcolor=_rgba(color, 0.2), line=dict(width=0), hoverinfo="skip",
                    name=f"{label}: {y} {level:.0%} CI", legendgroup=f"{label}: {y}", showlegend=False,
                    meta={**meta, "role": "band", "x": x},
                )  # fmt: skip
            role = "mean" if len(unit) > 1 else "run"
            figure.add_scatter(
                x=band["x"], y=band["mean"], mode=drawing_mode(experiment, y), line=dict(color=color),
                marker=dict(color=color), legendgroup=f"{label}: {y}",
                name=f"{label}: {y}" + (" (mean)" if len(unit) > 1 else ""),
                meta={**meta, "role": role, "x": resolve_x(names, y, x)},
            )  # fmt: skip
            theory_curve = THEORY_CURVES.get((experiment, y)) if theory else None
            if theory_curve is not None:
                exact = {
                    run_id: with_theory(experiment, y, by_id.loc[run_id, "config"], wide)
                    for run_id, wide in unit_wides.items()
                    if y in wide
                }
                theory_band = _band(exact, y, x, level)
                figure.add_scatter(
                    x=theory_band["x"], y=theory_band["mean"], mode="lines", line=dict(color=color, dash="dash"),
                    name=f"{label}: {theory_curve.label}", legendgroup=f"{label}: {y}",
                    meta={**meta, "role": "theory", "x": x},
                )  # fmt: skip
    return figure


# --------------------------------------------------------------------------- export


def find_browser(browser_path: str | os.PathLike | None = None) -> str | None:
    """The Chrome / Chromium kaleido drives: ``browser_path``, else ``$BROWSER_PATH``, else the first of
    :data:`BROWSER_NAMES` on ``PATH`` (Debian's ``apt-get install chromium`` gives ``/usr/bin/chromium``)."""
    chosen = browser_path or os.environ.get("BROWSER_PATH")
    if chosen:
        if not (Path(chosen).is_file() and os.access(chosen, os.X_OK)):
            raise ValueError(f"browser_path: {str(chosen)!r} is not an executable Chrome or Chromium")
        return str(chosen)
    return next((path for path in map(shutil.which, BROWSER_NAMES) if path), None)


def _kaleido():
    """kaleido >= 1, or a RuntimeError that says what to install."""
    try:
        version = metadata.version("kaleido")
        import kaleido
    except (ImportError, metadata.PackageNotFoundError):
        version = None
    if version is None or int(version.split(".")[0]) < 1:
        found = f" (found kaleido {version})" if version else ""
        raise RuntimeError(
            f"PNG/SVG/PDF export needs kaleido>=1{found}: pip install '{KALEIDO_PIN}' "
            "(it is a dependency of this project: pip install -e .). HTML export works without it."
        )
    return kaleido


def export_figure(
    figure: go.Figure,
    path: str | os.PathLike,
    *,
    width: int = 960,
    height: int = 600,
    browser_path: str | os.PathLike | None = None,
) -> Path:
    """Write ``figure`` to ``path``; the suffix picks the format.

    ``.html``: a self-contained page (plotly.js inlined), readable offline, no extra dependency. ``.png``,
    ``.svg``, ``.pdf``: rendered by kaleido (>= 1) in a headless Chrome or Chromium found by :func:`find_browser`,
    without network (MathJax off); a RuntimeError says what to install when either is missing.
    """
    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind in ("html", "htm"):
        figure.write_html(path, include_plotlyjs=True, full_html=True)
        return path
    if kind not in IMAGE_FORMATS:
        raise ValueError(f"path: expected a .html, .png, .svg or .pdf file, got {path.name!r}")
    kaleido = _kaleido()
    browser = find_browser(browser_path)
    if browser is None:
        raise RuntimeError(
            f"{kind.upper()} export needs Chrome or Chromium, and none was found ($BROWSER_PATH unset; none of "
            f"{', '.join(BROWSER_NAMES)} on PATH). Install it with `apt-get install -y chromium` (Debian/Ubuntu), "
            "or set BROWSER_PATH to a Chrome/Chromium binary. HTML export works without it."
        )
    options = {"format": kind, "width": width, "height": height}
    kaleido.write_fig_sync(go.Figure(figure), path=str(path), opts=options, kopts={"path": browser, "mathjax": False})
    return path
