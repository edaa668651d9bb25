"""Side by side: plotted values equal the stored metrics, bands equal hand-computed t-intervals, theory curves
equal their closed forms, and exports hold the trace data."""

import base64
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from lab import get
from lab.compare import (
    THEORY_CURVES,
    comparison_figure,
    export_figure,
    find_browser,
    matching_metrics,
    metric_keys,
    resolve_x,
    seed_band,
    seed_groups,
)
from lab.config import param
from lab.experiments.alignment_tradeoff import make_instance
from lab.registry import register
from lab.widgets import Compare

T_975 = {1: math.tan(math.pi * (0.975 - 0.5)), 2: (2 * 0.975 - 1) / math.sqrt(2 * 0.975 * 0.025)}
"""Student-t 0.975 quantiles in closed form: 1 degree of freedom is Cauchy, tan(pi (p - 1/2)); 2 degrees of
freedom, (2p - 1) / sqrt(2 p (1 - p))."""


@dataclass(frozen=True)
class TinyLLMConfig:
    slope: float = param(1.0, help="reward = slope * step + seed / 10", ge=0.0)
    seed: int = param(0, help="shifts the reward and scales the KL", ge=0)


@register("test-compare-llm", kind="llm", config=TinyLLMConfig, description="reward every step, KL every other step")
def _tiny_llm(cfg, run, progress):
    for step in range(6):
        run.log(step, iteration=step, reward=cfg.slope * step + cfg.seed / 10)
        if step % 2 == 0:
            run.log(step, kl_to_ref=0.01 * step * (cfg.seed + 1))


def _long(rows):
    return pd.DataFrame(rows, columns=["run_id", "step", "name", "value"]).assign(time=0.0)


def _traces(figure, role):
    return [trace for trace in figure.data if trace.meta["role"] == role]


def _wide(store, run_id):
    return store.metrics(run_id).pivot(index="step", columns="name", values="value")


def _tiny_runs(store, seeds, slope=1.0):
    experiment = get("test-compare-llm")
    return [experiment.run(experiment.config(slope=slope, seed=seed), store=store) for seed in seeds]


def test_metric_keys_match_across_curves_and_x_is_looked_up_in_the_curve_first():
    names = ["reward", "kl_to_ref", "tilted.reward", "tilted.kl_to_ref", "nash_mp.kl", "nash_mp.queries", "queries"]
    assert metric_keys(["tilted.reward", "reward", "nash_mp.kl"]) == {"tilted.reward", "reward", "nash_mp.kl", "kl"}
    assert matching_metrics(names, "reward") == ["reward", "tilted.reward"]
    assert matching_metrics(names, "tilted.reward") == ["tilted.reward"]
    assert resolve_x(names, "tilted.reward", "kl_to_ref") == "tilted.kl_to_ref"
    assert resolve_x(names, "reward", "kl_to_ref") == "kl_to_ref"
    assert resolve_x(names, "nash_mp.kl", "queries") == "nash_mp.queries"
    assert resolve_x(names, "nash_mp.kl", "step") == "step"
    assert resolve_x(names, "nash_mp.kl", "iteration") is None


def test_seed_band_is_the_mean_and_student_t_interval_per_step():
    values = {1: [1.0, 2.0, 4.0], 2: [3.0, 5.0, 4.0], 3: [2.0, 2.0]}  # run 3 did not log step 2
    metrics = _long(
        [(run, step, "y", value) for run, ys in values.items() for step, value in enumerate(ys)]
        + [(run, step, "x", 10.0 * step + run) for run in values for step in range(3)]
    )
    band = seed_band(metrics, "y", x="x")
    assert band["step"].tolist() == [0, 1, 2] and band["n"].tolist() == [3, 3, 2]
    for step in range(3):
        ys = np.array([ys[step] for ys in values.values() if step < len(ys)])
        mean, sd, n = ys.sum() / ys.size, math.sqrt(((ys - ys.mean()) ** 2).sum() / (ys.size - 1)), ys.size
        half_width = T_975[n - 1] * sd / math.sqrt(n)
        row = band.iloc[step]
        assert row["mean"] == pytest.approx(mean, rel=1e-12)
        assert (row["low"], row["high"]) == pytest.approx((mean - half_width, mean + half_width), rel=1e-12)
        assert row["x"] == pytest.approx(10.0 * step + np.mean([1, 2, 3][:n]), rel=1e-12)
    one_run = seed_band(metrics[metrics["run_id"] == 1], "y")
    assert one_run["mean"].tolist() == values[1] and one_run["low"].isna().all() and one_run["high"].isna().all()
    with pytest.raises(ValueError, match="level"):
        seed_band(metrics, "y", level=1.0)


def test_seed_groups_are_configs_that_differ_only_by_seed():
    runs = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "experiment": ["a", "a", "a", "b"],
            "config": [{"k": 1, "seed": 0}, {"k": 2, "seed": 0}, {"k": 1, "seed": 5}, {"k": 1, "seed": 1}],
        }
    )
    assert seed_groups(runs) == [[1, 3], [2], [4]]


def test_plotted_y_equals_the_stored_metrics_and_x_pairs_at_the_same_step(store):
    tradeoff = get("alignment-tradeoff")
    theory_id = tradeoff.run(tradeoff.config(max_n=8, n_betas=5, mc_samples=0, reward="binary"), store=store)
    (llm_id,) = _tiny_runs(store, [2], slope=0.5)
    compare = Compare(store, run_ids=[theory_id, llm_id], metrics=["reward"], x="kl_to_ref")
    assert compare.metric_options == ["kl_to_ref", "reward"]  # the keys both runs log
    by_metric = {(trace.meta["runs"][0], trace.meta["metric"]): trace for trace in _traces(compare.figure, "run")}
    assert set(by_metric) == {(theory_id, "best_of_n.reward"), (theory_id, "tilted.reward"), (llm_id, "reward")}
    llm = _wide(store, llm_id)
    assert by_metric[llm_id, "reward"].meta["x"] == "kl_to_ref"
    np.testing.assert_array_equal(by_metric[llm_id, "reward"].x, llm["kl_to_ref"].dropna())  # steps 0, 2, 4
    np.testing.assert_array_equal(by_metric[llm_id, "reward"].y, 0.5 * np.array([0, 2, 4]) + 0.2)
    theory = _wide(store, theory_id)
    for curve in ("tilted", "best_of_n"):
        trace = by_metric[theory_id, f"{curve}.reward"]
        pairs = theory[[f"{curve}.kl_to_ref", f"{curve}.reward"]].dropna()
        assert trace.meta["x"] == f"{curve}.kl_to_ref"
        np.testing.assert_array_equal(trace.x, pairs[f"{curve}.kl_to_ref"])
        np.testing.assert_array_equal(trace.y, pairs[f"{curve}.reward"])
    compare.x_picker.value = "step"
    llm_trace = next(t for t in _traces(compare.figure, "run") if t.meta["runs"] == [llm_id])
    np.testing.assert_array_equal(llm_trace.x, np.arange(6))
    np.testing.assert_array_equal(llm_trace.y, llm["reward"])


def test_metric_scope_and_picks_from_code(store):
    tradeoff = get("alignment-tradeoff")
    theory_id = tradeoff.run(tradeoff.config(max_n=4, n_betas=3, mc_samples=0), store=store)
    (llm_id,) = _tiny_runs(store, [0])
    compare = Compare(store, run_ids=[theory_id, llm_id])
    assert "tilted.beta" not in compare.metric_options and "kl_to_ref" in compare.metric_options
    compare.metric_scope.value = False
    assert "tilted.beta" in compare.metric_options and "beta" in compare.metric_options
    assert compare.x_options[0] == "step" and {"kl_to_ref", "iteration", "tilted.beta"} <= set(compare.x_options)
    with pytest.raises(ValueError, match="metrics: 'nope'"):
        compare.select(metrics=["nope"])
    with pytest.raises(ValueError, match="run_ids: no run 99"):
        compare.select(run_ids=[99])
    (later_id,) = _tiny_runs(store, [1])
    assert later_id not in dict(compare.runs_picker.options).values()
    compare.refresh_button.click()
    labels = dict((run_id, label) for label, run_id in compare.runs_picker.options)
    assert labels[later_id] == f"#{later_id} test-compare-llm [llm, finished] seed=1"
    assert compare.runs_picker.value == (theory_id, llm_id)  # picks survive a refresh


def test_runs_that_differ_only_by_seed_become_a_mean_and_a_hand_computed_band(store):
    run_ids = _tiny_runs(store, [0, 1, 3])
    (other,) = _tiny_runs(store, [0], slope=2.0)
    compare = Compare(store, run_ids=[*run_ids, other], metrics=["reward"])
    (mean,) = _traces(compare.figure, "mean")
    (band,) = _traces(compare.figure, "band")
    assert mean.meta["runs"] == band.meta["runs"] == run_ids
    rewards = np.array([[step + seed / 10 for step in range(6)] for seed in (0, 1, 3)])
    expected_mean = rewards.mean(axis=0)
    half_width = T_975[2] * rewards.std(axis=0, ddof=1) / math.sqrt(3)
    np.testing.assert_allclose(mean.y, expected_mean, rtol=1e-12)
    np.testing.assert_allclose(band.y[:6], expected_mean + half_width, rtol=1e-12)  # upper edge, then lower reversed
    np.testing.assert_allclose(band.y[6:][::-1], expected_mean - half_width, rtol=1e-12)
    np.testing.assert_array_equal(band.x, [*range(6), *range(5, -1, -1)])
    assert [trace.meta["runs"] for trace in _traces(compare.figure, "run")] == [[other]]
    compare.group_seeds.value = False
    assert [trace.meta["runs"] for trace in _traces(compare.figure, "run")] == [[i] for i in [*run_ids, other]]
    assert not _traces(compare.figure, "band")


def test_nash_mp_theory_curve_is_the_closed_form_bound(store):
    nash = get("nash-learning")
    only_nash_mp = dict(nash_md=False, nash_md_decaying=False, mmd=False, extragradient=False, optimistic=False)
    run_id = nash.run(nash.config(n_actions=8, beta=0.2, max_queries=30, **only_nash_mp), store=store)
    figure = Compare(store, run_ids=[run_id], metrics=["nash_mp.kl"], x="queries", log_y=True).figure
    (theory,) = _traces(figure, "theory")
    wide = _wide(store, run_id)
    queries = wide["nash_mp.queries"].dropna().to_numpy()
    initial_kl = wide["nash_mp.kl"].loc[0]
    np.testing.assert_array_equal(theory.x, queries)
    np.testing.assert_allclose(theory.y, initial_kl * 1.4 ** (-queries / 2), rtol=1e-12)
    np.testing.assert_allclose(theory.y, wide["nash_mp.bound"].dropna(), rtol=1e-12)  # what the run logged
    assert figure.layout.yaxis.type == "log"
    figure = Compare(store, run_ids=[run_id], metrics=["nash_mp.kl"], theory=False).figure
    assert not _traces(figure, "theory")


def test_alignment_theory_curve_is_the_exact_tilted_distribution(store):
    tradeoff = get("alignment-tradeoff")
    cfg = tradeoff.config(max_n=8, n_betas=4, mc_samples=400, seed=3)
    run_id = tradeoff.run(cfg, store=store)
    figure = Compare(store, run_ids=[run_id], metrics=["tilted_mc.reward"], x="kl_to_ref").figure
    (theory,) = _traces(figure, "theory")
    (estimate,) = _traces(figure, "run")
    assert estimate.mode == "markers" and theory.line.dash == "dash"  # as the experiment's panel draws them
    p, r = make_instance(cfg)
    kls, rewards = [], []
    for beta in _wide(store, run_id)["tilted.beta"].dropna():
        tilted = p * np.exp((r - r.max()) / beta)
        tilted /= tilted.sum()
        kls.append(np.sum(tilted * np.log(tilted / p)))
        rewards.append(tilted @ r)
    np.testing.assert_allclose(theory.x, kls, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(theory.y, rewards, rtol=1e-9)
    assert ("alignment-tradeoff", "tilted_mc.reward") in THEORY_CURVES


def test_a_seed_group_gets_the_mean_of_its_theory_curves(store):
    nash = get("nash-learning")
    only_nash_mp = dict(nash_md=False, nash_md_decaying=False, mmd=False, extragradient=False, optimistic=False)
    run_ids = [nash.run(nash.config(n_actions=6, max_queries=10, seed=s, **only_nash_mp), store=store) for s in (0, 1)]
    figure = Compare(store, run_ids=run_ids, metrics=["nash_mp.kl"]).figure
    (theory,) = _traces(figure, "theory")
    bounds = np.array([_wide(store, run_id)["nash_mp.bound"].dropna() for run_id in run_ids])
    np.testing.assert_allclose(theory.y, bounds.mean(axis=0), rtol=1e-12)


def _html_traces(path):
    """The traces of a written HTML figure: the JSON list passed to Plotly.newPlot, typed arrays decoded."""
    text = path.read_text()
    start = text.index("Plotly.newPlot(")
    after_id = text.index(",", text.index('"', start + 15) + 1) + 1
    data, _ = json.JSONDecoder().raw_decode(text[after_id:].lstrip())

    def decoded(values):
        if isinstance(values, dict) and "bdata" in values:
            return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        return np.asarray(values, dtype=float)

    return [(trace["name"], decoded(trace["x"]), decoded(trace["y"])) for trace in data]


def test_export_writes_html_with_the_trace_data(store, tmp_path):
    (run_id,) = _tiny_runs(store, [4])
    compare = Compare(store, run_ids=[run_id], metrics=["reward"], x="kl_to_ref")
    path = compare.export(tmp_path / "compare.html")
    assert path == tmp_path / "compare.html" and path.stat().st_size > 0
    assert compare.status.value == f"exported to {path}"
    ((name, x, y),) = _html_traces(path)
    assert name == f"#{run_id} test-compare-llm: reward"
    np.testing.assert_array_equal(x, [0.0, 0.1, 0.2])
    np.testing.assert_array_equal(y, [0.4, 2.4, 4.4])
    assert compare.export(tmp_path / "compare.txt") is None
    assert "not exported: path: expected a .html, .png, .svg or .pdf file" in compare.status.value


def test_image_export_says_what_to_install(tmp_path, monkeypatch):
    figure = comparison_figure(pd.DataFrame(columns=["id", "experiment", "config"]), _long([]), ["y"])
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"apt-get install -y chromium.*HTML export works without it"):
        export_figure(figure, tmp_path / "figure.png")
    with pytest.raises(ValueError, match="browser_path"):
        export_figure(figure, tmp_path / "figure.png", browser_path=tmp_path / "no-such-chrome")
    monkeypatch.setattr("lab.compare.metadata.version", lambda name: "0.2.1")
    with pytest.raises(RuntimeError, match=r"kaleido>=1 \(found kaleido 0.2.1\): pip install 'kaleido==1.5.0'"):
        export_figure(figure, tmp_path / "figure.svg")
    assert export_figure(figure, tmp_path / "figure.html").stat().st_size > 0


@pytest.mark.slow
def test_png_and_svg_export_through_kaleido_and_chromium(store, tmp_path):
    pytest.importorskip("kaleido")
    if find_browser() is None:
        pytest.skip("no Chrome/Chromium on PATH (apt-get install chromium)")
    (run_id,) = _tiny_runs(store, [0])
    figure = Compare(store, run_ids=[run_id], metrics=["reward"]).build_figure()
    png = export_figure(figure, tmp_path / "figure.png", width=400, height=300)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png.read_bytes()[16:20], "big") == 400  # IHDR width
    svg = export_figure(figure, tmp_path / "figure.svg").read_text()
    assert svg.startswith("<svg") and "reward" in svg
