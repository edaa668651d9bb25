"""The panel without a browser: set widget values, press Run or Stop, read the figure's data."""

import threading
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import pytest

from lab import get
from lab.config import param
from lab.registry import Series, register
from lab.widgets import ConfigForm, ExperimentPanel


@dataclass(frozen=True)
class WaitConfig:
    rate: float = param(2.0, help="slope of the logged line", ge=0.0, le=10.0)


STARTED = threading.Event()


@register(
    "test-wait-for-stop",
    kind="theory",
    config=WaitConfig,
    description="logs y = rate * x until it is stopped",
    series=(Series("x", "y", "y"),),
)
def _wait_for_stop(cfg, run, progress):
    for step in range(10_000):
        run.log(step, x=step, y=cfg.rate * step)
        if step == 4:
            STARTED.set()
        progress(step, 10_000)
        threading.Event().wait(0.01)


def test_form_controls_follow_the_config_fields():
    form = ConfigForm(get("alignment-tradeoff").config_cls, max_n=8)
    controls = form.controls
    assert isinstance(controls["base"], widgets.Dropdown)
    assert controls["base"].options == ("zipf", "dirichlet", "uniform")
    assert isinstance(controls["n_betas"], widgets.IntSlider)
    assert (controls["n_betas"].min, controls["n_betas"].max) == (2, 1000)
    assert isinstance(controls["p_correct"], widgets.FloatSlider)
    assert isinstance(controls["mc_samples"], widgets.IntText)  # unbounded above: a text box
    assert controls["max_n"].value == 8 and form.config().max_n == 8
    controls["mc_samples"].value = 3
    with pytest.raises(ValueError, match="mc_samples"):
        form.config()
    assert "mc_samples: expected 0 or at least" in form.error.value


def test_run_button_fills_the_figure_with_the_runs_curves(store):
    panel = ExperimentPanel("alignment-tradeoff", store=store)
    assert all(len(trace.x) == 0 for trace in panel.figure.data)
    panel.form.controls["n_betas"].value = 9
    panel.form.controls["max_n"].value = 12
    panel.form.controls["reward"].value = "binary"
    panel.run_button.click()
    panel.wait()
    assert panel.last_error is None
    assert store.run_info(panel.run_id)["status"] == "finished" and "finished" in panel.status.value
    assert panel.progress.value == 1.0 and not panel.run_button.disabled and panel.stop_button.disabled
    tilted, best_of_n = panel.figure.data[0], panel.figure.data[1]
    assert len(tilted.x) == 9 and len(best_of_n.x) == 12
    wide = store.metrics(panel.run_id).pivot(index="step", columns="name", values="value")
    np.testing.assert_array_equal(tilted.y, wide["tilted.reward"].dropna().to_numpy())
    p_correct = panel.form.config().p_correct  # binary reward: best-of-N reaches 1 - (1 - P_c)^N
    np.testing.assert_allclose(best_of_n.y, 1 - (1 - p_correct) ** np.arange(1, 13), rtol=1e-12)
    assert np.all(np.diff(best_of_n.x) > 0)  # KL grows with N


def test_a_bad_value_starts_no_run(store):
    panel = ExperimentPanel("alignment-tradeoff", store=store)
    panel.form.controls["mc_samples"].value = 5
    panel.run_button.click()
    assert panel.run_id is None and store.runs().empty
    assert "not started: mc_samples" in panel.status.value


def test_stop_button_stops_the_worker_and_keeps_its_metrics(store):
    STARTED.clear()
    panel = ExperimentPanel("test-wait-for-stop", store=store, rate=3.0)
    panel.run_button.click()
    assert panel.running and panel.run_button.disabled and not panel.stop_button.disabled
    assert STARTED.wait(60)
    panel.stop_button.click()
    panel.wait(60)
    assert not panel.running
    info = store.run_info(panel.run_id)
    assert info["status"] == "stopped" and "stopped" in panel.status.value
    trace = panel.figure.data[0]
    logged = store.metrics(panel.run_id, names="y")
    assert 5 <= len(trace.x) == len(logged) < 10_000
    np.testing.assert_array_equal(trace.y, 3.0 * trace.x)


def test_panel_arguments_are_checked(store):
    with pytest.raises(ValueError, match="redraws_per_second"):
        ExperimentPanel("alignment-tradeoff", store=store, redraws_per_second=0)
    with pytest.raises(ValueError, match="max_n"):
        ExperimentPanel("alignment-tradeoff", store=store, max_n=-1)
