"""Notebook front end: a config form built from an experiment's dataclass, a run panel, and a comparison view.

``ExperimentPanel(name)`` = form + Run / Stop + progress bar + a live plotly ``FigureWidget``.
The run executes on a worker thread, so the kernel's main thread stays free to receive the
Stop click; the figure is redrawn from the run's logged metrics at most ``redraws_per_second``
times a second (one ``batch_update`` per redraw) and once more at the end. All logic lives
in plain methods (``run``, ``stop``, ``wait``), so tests drive the panel without a browser.

``Compare(store)`` = pickers for runs of any experiment, their metrics and the x-axis, options for seed
bands, theory curves and log axes, and an export box, over one ``FigureWidget`` drawn by
:func:`lab.compare.comparison_figure`; its state lives in plain methods too (``select``, ``redraw``, ``export``).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab import registry
from lab.compare import comparison_figure, export_figure, metric_keys, run_label
from lab.config import ConfigError, FieldSpec, fields, make_config
from lab.plots import STEP, series_figure
from lab.runs import RunStore

_STYLE = {"description_width": "140px"}
_LAYOUT = widgets.Layout(width="420px")
_MAX_SLIDER_STEPS = 1000


def _control(spec: FieldSpec) -> widgets.ValueWidget:
    """The widget for one field: checkbox, dropdown, (log-)slider when bounded, else a text box."""
    common = dict(description=spec.name, tooltip=spec.help, style=_STYLE, layout=_LAYOUT)
    lower, upper = spec.lower, spec.upper
    if spec.type is bool:
        return widgets.Checkbox(value=spec.default, indent=False, **common)
    if spec.choices is not None:
        return widgets.Dropdown(options=list(spec.choices), value=spec.default, **common)
    bounded = lower is not None and upper is not None
    slider = dict(continuous_update=False, **common)
    if spec.type is int and bounded and upper - lower <= _MAX_SLIDER_STEPS:
        return widgets.IntSlider(value=spec.default, min=int(lower), max=int(upper), **slider)
    if spec.type is float and bounded and spec.log and lower > 0:
        low, high = math.log10(lower), math.log10(upper)
        return widgets.FloatLogSlider(value=spec.default, min=low, max=high, step=(high - low) / 100, **slider)
    if spec.type is float and bounded:
        return widgets.FloatSlider(value=spec.default, min=lower, max=upper, step=(upper - lower) / 100, **slider)
    if spec.type is int:
        return widgets.IntText(value=spec.default, **common)
    if spec.type is float:
        return widgets.FloatText(value=spec.default, **common)
    return widgets.Text(value=spec.default, **common)


class ConfigForm:
    """Widgets for every field of ``config_cls``; :meth:`config` validates exactly as the CLI does."""

    def __init__(self, config_cls: type, **values: Any) -> None:
        self.config_cls = config_cls
        initial = make_config(config_cls, values)
        self.controls: dict[str, widgets.ValueWidget] = {}
        for spec in fields(config_cls):
            control = _control(spec)
            control.value = getattr(initial, spec.name)
            self.controls[spec.name] = control
        self.error = widgets.HTML()
        self.widget = widgets.VBox([*self.controls.values(), self.error])

    def values(self) -> dict[str, Any]:
        return {name: control.value for name, control in self.controls.items()}

    def config(self) -> Any:
        """The validated config; on a bad value, shows the message under the form and raises ConfigError."""
        try:
            config = make_config(self.config_cls, self.values())
        except ConfigError as error:
            self.error.value = f"<span style='color:#b00020'>{error}</span>"
            raise
        self.error.value = ""
        return config


class ExperimentPanel:
    """Form, Run/Stop, progress bar and live figure for one registered experiment.

    ``ExperimentPanel("alignment-tradeoff", n_outputs=30)`` starts from the defaults overridden
    by the keyword values; display it as the last expression of a cell.
    """

    def __init__(self, name: str, *, store: RunStore | None = None, redraws_per_second: float = 10.0, **values):
        if not redraws_per_second > 0:
            raise ValueError(f"redraws_per_second: expected a positive number, got {redraws_per_second!r}")
        self.experiment = registry.get(name)
        self.store = store if store is not None else RunStore()
        self.min_redraw_interval = 1.0 / redraws_per_second
        self.form = ConfigForm(self.experiment.config_cls, **values)
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.progress = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress", style=_STYLE)
        self.status = widgets.HTML(value="ready")
        self.figure = go.FigureWidget(
            series_figure(
                None,
                self.experiment.series,
                title=name,
                axis_titles=self.experiment.axis_titles,
                log_y=self.experiment.log_y,
            )
        )
        self.run_button.on_click(lambda _: self.run())
        self.stop_button.on_click(lambda _: self.stop())
        controls = widgets.VBox([self.form.widget, widgets.HBox([self.run_button, self.stop_button]), self.progress])
        self.widget = widgets.VBox([controls, self.status, self.figure])
        self.run_id: int | None = None
        self.last_error: Exception | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._points: dict[str, dict[int, float | None]] = {}
        self._last_redraw = 0.0

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> int | None:
        """Validate the form and start a run on a worker thread; returns its id (None on a bad value)."""
        if self.running:
            return None
        try:
            cfg, run = self.experiment.start(self.form.config(), store=self.store)
        except ConfigError as error:
            self.status.value = f"not started: {error}"
            return None
        self.run_id = run.id
        self._stop.clear()
        self._points = {}
        self._last_redraw = 0.0
        run.subscribe(self._collect)
        self.progress.value = 0.0
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.status.value = f"run {run.id} running"
        self._thread = threading.Thread(target=self._work, args=(cfg, run), name=f"run-{run.id}", daemon=True)
        self._thread.start()
        return run.id

    def stop(self) -> None:
        """Ask the running experiment to stop at its next progress report; its metrics so far are kept."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current run ends (for scripts and tests)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _report(self, done: int, total: int) -> bool:
        self.progress.value = done / total if total else 0.0
        return self._stop.is_set()

    def _work(self, cfg: Any, run: Any) -> None:
        try:
            self.experiment.complete(cfg, run, self._report)
        except Exception as error:  # complete() has recorded it on the run; keep it for the caller too
            self.last_error = error
        finally:
            self._redraw()
            info = self.store.run_info(run.id)
            detail = f": {info['message']}" if info["message"] else ""
            self.status.value = f"run {run.id} {info['status']}{detail}"
            if info["status"] == "finished":
                self.progress.value = 1.0
            self.run_button.disabled, self.stop_button.disabled = False, True

    def _collect(self, rows: list[tuple[int, str, float | None]]) -> None:
        for step, name, value in rows:
            self._points.setdefault(name, {})[step] = value
        if time.monotonic() - self._last_redraw >= self.min_redraw_interval:
            self._redraw()

    def _redraw(self) -> None:
        self._last_redraw = time.monotonic()
        with self.figure.batch_update():
            for trace, series in zip(self.figure.data, self.experiment.series, strict=True):
                xs, ys = self._points.get(series.x, {}), self._points.get(series.y, {})
                steps = sorted(step for step in xs.keys() & ys.keys() if xs[step] is not None and ys[step] is not None)
                trace.x = np.array([xs[step] for step in steps], dtype=float)
                trace.y = np.array([ys[step] for step in steps], dtype=float)


class Compare:
    """Runs of any experiment and kind on one figure: pick runs, metrics and the x-axis, then export.

    ``Compare(store, run_ids=[3, 7], metrics=["reward"], x="kl_to_ref")`` starts with those picks; display it as
    the last expression of a cell. The runs list shows ``#id experiment [kind, status]`` and the config values that
    differ from the defaults. The metrics offered are the keys (:func:`lab.compare.metric_keys`) shared by all the
    picked runs, or those of any of them; the x choices are ``step`` and every key of any picked run. Runs that
    differ only by seed are drawn as mean ± ``level`` Student-t band when "seeds as bands" is on; metrics with a
    closed form (:data:`lab.compare.THEORY_CURVES`) get it dashed when "theory" is on.
    """

    def __init__(
        self,
        store: RunStore | None = None,
        *,
        run_ids: Iterable[int] = (),
        metrics: Iterable[str] = (),
        x: str = STEP,
        shared_metrics: bool = True,
        group_seeds: bool = True,
        theory: bool = True,
        log_x: bool = False,
        log_y: bool = False,
        level: float = 0.95,
    ) -> None:
        if not 0 < level < 1:
            raise ValueError(f"level: expected a confidence level in (0, 1), got {level!r}")
        self.store = store if store is not None else RunStore()
        self.level = level
        wide = widgets.Layout(width="100%")
        self.runs_picker = widgets.SelectMultiple(description="runs", rows=8, style=_STYLE, layout=wide)
        self.metric_scope = widgets.ToggleButtons(
            options=[("shared by all runs", True), ("in any run", False)], value=shared_metrics, style=_STYLE
        )
        self.metrics_picker = widgets.SelectMultiple(description="metrics", rows=8, style=_STYLE, layout=_LAYOUT)
        self.x_picker = widgets.Dropdown(description="x", options=[STEP], value=STEP, style=_STYLE, layout=_LAYOUT)
        self.group_seeds = widgets.Checkbox(value=group_seeds, description=f"seeds as mean ± {level:.0%} CI")
        self.theory = widgets.Checkbox(value=theory, description="theory curves")
        self.log_x = widgets.Checkbox(value=log_x, description="log x")
        self.log_y = widgets.Checkbox(value=log_y, description="log y")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.export_path = widgets.Text(value="comparison.html", description="export to", style=_STYLE)
        self.export_button = widgets.Button(description="Export", icon="download")
        self.status = widgets.HTML()
        self.figure = go.FigureWidget()
        options = widgets.VBox([self.group_seeds, self.theory, self.log_x, self.log_y])
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.runs_picker, self.refresh_button]),
                self.metric_scope,
                widgets.HBox([widgets.VBox([self.metrics_picker, self.x_picker]), options]),
                widgets.HBox([self.export_path, self.export_button]),
                self.status,
                self.figure,
            ]
        )
        self._runs = pd.DataFrame()
        self._metrics = pd.DataFrame(columns=["run_id", "step", "name", "value", "time"])
        self._holding = False
        self.refresh()
        self.select(run_ids=run_ids, metrics=metrics, x=x)
        self.runs_picker.observe(lambda _: self._on_runs_changed(), "value")
        self.metric_scope.observe(lambda _: self._on_options_changed(), "value")
        for control in (self.metrics_picker, self.x_picker, self.group_seeds, self.theory, self.log_x, self.log_y):
            control.observe(lambda _: self._on_options_changed(), "value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.export_button.on_click(lambda _: self.export())

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # -- state -----------------------------------------------------------------------------------
    @property
    def selected_runs(self) -> pd.DataFrame:
        """The picked runs' rows of ``store.runs()``, in id order."""
        return self._runs[self._runs["id"].isin(self.runs_picker.value)]

    @property
    def metric_options(self) -> list[str]:
        """The metric keys of the picked runs: shared by all of them, or of any (the metric scope), sorted."""
        keys = [metric_keys(frame["name"].unique()) for _, frame in self._metrics.groupby("run_id")]
        if not keys:
            return []
        return sorted(set.intersection(*keys) if self.metric_scope.value else set.union(*keys))

    @property
    def x_options(self) -> list[str]:
        """``step``, then every metric key of any picked run."""
        return [STEP, *sorted(metric_keys(self._metrics["name"].unique()) - {STEP})]

    def refresh(self) -> None:
        """Re-read the store: new runs in the list, new metrics of the picked runs."""
        self._runs = self.store.runs()
        picked = [run_id for run_id in self.runs_picker.value if run_id in set(self._runs["id"])]
        with self._hold():
            self.runs_picker.options = [(run_label(row), int(row.id)) for row in self._runs.itertuples()]
            self.runs_picker.value = tuple(picked)
        self._on_runs_changed()

    def select(
        self, *, run_ids: Iterable[int] | None = None, metrics: Iterable[str] | None = None, x: str | None = None
    ) -> None:
        """Pick runs, metrics and x from code (what the pickers do by hand); unknown ids or names raise ValueError."""
        with self._hold():
            if run_ids is not None:
                run_ids = tuple(int(run_id) for run_id in run_ids)
                missing = sorted(set(run_ids) - set(self._runs["id"]))
                if missing:
                    raise ValueError(f"run_ids: no run {missing[0]} in {self.store.path}")
                self.runs_picker.value = run_ids
                self._load_metrics()
            if metrics is not None:
                metrics = tuple(metrics)
                unknown = sorted(set(metrics) - set(self.metric_options))
                if unknown:
                    raise ValueError(f"metrics: {unknown[0]!r} is not among {self.metric_options}")
                self.metrics_picker.value = metrics
            if x is not None:
                if x not in self.x_options:
                    raise ValueError(f"x: {x!r} is not among {self.x_options}")
                self.x_picker.value = x
        self.redraw()

    def build_figure(self) -> go.Figure:
        """The figure of the current picks (a plain ``go.Figure``)."""
        return comparison_figure(
            self.selected_runs,
            self._metrics,
            list(self.metrics_picker.value),
            x=self.x_picker.value,
            group_seeds=self.group_seeds.value,
            theory=self.theory.value,
            level=self.level,
            log_x=self.log_x.value,
            log_y=self.log_y.value,
        )

    def redraw(self) -> None:
        """Replace the figure's traces and layout with :meth:`build_figure`'s, in one batch update."""
        built = self.build_figure()
        with self.figure.batch_update():
            self.figure.data = ()
            self.figure.add_traces(built.data)
            self.figure.layout = built.layout

    def export(self, path: str | Path | None = None) -> Path | None:
        """Write the figure (:func:`lab.compare.export_figure`; the suffix picks HTML, PNG, SVG or PDF) to ``path``,
        by default the export box's; returns the path, or None with the reason in ``status`` when it failed."""
        target = Path(path if path is not None else self.export_path.value)
        try:
            written = export_figure(self.build_figure(), target)
        except (RuntimeError, ValueError, OSError) as error:
            self.status.value = f"<span style='color:#b00020'>not exported: {error}</span>"
            return None
        self.status.value = f"exported to {written}"
        return written

    # -- wiring ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _hold(self) -> Iterator[None]:
        """Widget changes made inside do not redraw; the caller redraws once after."""
        outer, self._holding = self._holding, True
        try:
            yield
        finally:
            self._holding = outer

    def _load_metrics(self) -> None:
        """Read the picked runs' metrics and narrow the metric and x pickers to what they offer."""
        run_ids = [int(run_id) for run_id in self.runs_picker.value]
        self._metrics = self.store.metrics(run_ids) if run_ids else self._metrics.iloc[0:0]
        self._update_pickers()

    def _update_pickers(self) -> None:
        with self._hold():
            kept = tuple(key for key in self.metrics_picker.value if key in self.metric_options)
            self.metrics_picker.options = self.metric_options
            self.metrics_picker.value = kept
            x = self.x_picker.value
            self.x_picker.options = self.x_options
            self.x_picker.value = x if x in self.x_options else STEP

    def _on_runs_changed(self) -> None:
        if self._holding:
            return
        self._load_metrics()
        self.redraw()

    def _on_options_changed(self) -> None:
        if self._holding:
            return
        with self._hold():
            self._update_pickers()
        self.redraw()
