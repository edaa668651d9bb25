"""Notebook front end: a config form built from an experiment's dataclass, and a run panel.

``ExperimentPanel(name)`` = form + Run / Stop + progress bar + a live plotly ``FigureWidget``.
The run executes on a worker thread, so the kernel's main thread stays free to receive the
Stop click; the figure is redrawn from the run's logged metrics at most ``redraws_per_second``
times a second (one ``batch_update`` per redraw) and once more at the end. All logic lives
in plain methods (``run``, ``stop``, ``wait``), so tests drive the panel without a browser.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from lab import registry
from lab.config import ConfigError, FieldSpec, fields, make_config
from lab.plots import series_figure
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
