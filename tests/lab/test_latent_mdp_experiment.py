"""The latent-mdp experiment through the run store, and its figures: logged reference values and regret are
theory's, certainty equivalence is linear on deep sea, a resumed run does not redo finished (learner, seed)
pairs, and the views draw log-log regret with slopes and the value-of-information gaps."""

import numpy as np
import pytest

from lab import get
from lab.config import ConfigError
from lab.experiments import latent_mdp
from lab.experiments.latent_mdp import build_lmdp, load_results
from lab.lmdp_views import regret_figure, value_gap_figure
from lab.widgets import ExperimentPanel
from theory.lmdp import ModelBasedLearner, PosteriorSampling, ReferenceValues, reference_values, run_learner


def wide(store, run_id):
    return store.metrics(run_id).pivot(index="step", columns="name", values="value")


def test_revealing_instance_logs_its_closed_form_values_and_gaps(store):
    # p = 0.8, w = (1/2, 1/2): V_Markov = max(w) = 0.5, V* = 0.4 + 0.4 = 0.8, V_oracle = 1
    experiment = get("latent-mdp")
    cfg = experiment.config(instance="revealing", episodes=8, hoeffding=False, certainty_equivalence=False, psrl=False)
    references = wide(store, experiment.run(cfg, store=store)).loc[0]
    assert references["value.markov"] == pytest.approx(0.5, abs=1e-12)
    assert references["value.optimal"] == pytest.approx(0.8, abs=1e-12)
    assert references["value.oracle"] == pytest.approx(1.0, abs=1e-12)
    assert references["gap.history"] == pytest.approx(0.3, abs=1e-12)
    assert references["gap.context"] == pytest.approx(0.2, abs=1e-12)


def test_an_instance_too_large_for_the_markov_brute_force_logs_no_markov_value(store):
    # deep sea of depth 5: A^(H S) = 2^25 Markov policies, above the brute force's 2^22
    experiment = get("latent-mdp")
    cfg = experiment.config(instance="deep_sea", horizon=5, episodes=8, log_every=4, n_seeds=1, bernstein=False)
    run_id = experiment.run(cfg, store=store, progress=lambda done, total: done >= 8)  # stop after the first pair
    metrics = wide(store, run_id)
    assert np.isnan(metrics.loc[0, "value.markov"]) and np.isnan(metrics.loc[0, "gap.history"])
    results = load_results(store.metrics(run_id))
    assert results.references.markov is None and results.references.oracle == pytest.approx(1.0)
    assert set(results.curves) == {"hoeffding"} and results.episodes.tolist() == [4.0, 8.0]


def test_logged_regret_and_references_are_theorys_on_the_same_seed(store):
    experiment = get("latent-mdp")
    cfg = experiment.config(episodes=300, log_every=25, n_seeds=2, hoeffding=False, certainty_equivalence=False)
    run_id = experiment.run(cfg, store=store)
    metrics = wide(store, run_id)
    lmdp = build_lmdp(cfg)
    truth = reference_values(lmdp)
    assert truth.markov <= truth.optimal <= truth.oracle
    assert metrics.loc[0, "value.optimal"] == truth.optimal and metrics.loc[0, "value.markov"] == truth.markov
    assert metrics.loc[0, "value.oracle"] == truth.oracle
    logged = np.arange(25, 301, 25)
    np.testing.assert_array_equal(metrics["episode"].dropna().to_numpy(), logged)
    for name, learner in (("bernstein", lambda: ModelBasedLearner("bernstein")), ("psrl", PosteriorSampling)):
        for seed in (0, 1):
            result = run_learner(lmdp, learner(), 300, seed)
            curve = metrics[f"{name}.seed{seed}.cumulative_regret"].dropna()
            np.testing.assert_array_equal(curve.index, logged)
            np.testing.assert_allclose(curve.to_numpy(), result.cumulative_regret[logged - 1], rtol=0, atol=1e-12)
            assert metrics.loc[300, f"{name}.seed{seed}.slope"] == pytest.approx(result.slope(75, 300), abs=1e-12)
    results = load_results(store.metrics(run_id))
    assert set(results.curves) == {"bernstein", "psrl"} and results.curves["psrl"].shape == (2, 12)
    assert results.references == truth


def test_certainty_equivalence_regret_is_exactly_linear_on_deep_sea(store):
    # depth 4, two contexts: V* = 0.5375; the greedy learner stays on the distractor, V = H * 0.1 / H = 0.1
    experiment = get("latent-mdp")
    cfg = experiment.config(instance="deep_sea", horizon=4, episodes=400, log_every=50, n_seeds=1, hoeffding=False)
    results = load_results(store.metrics(experiment.run(cfg, store=store)))
    assert results.references.optimal == pytest.approx(0.5375, abs=1e-12)
    np.testing.assert_allclose(results.curves["certainty_equivalence"][0], 0.4375 * results.episodes, atol=1e-9)
    assert results.slopes["certainty_equivalence"] == pytest.approx(1.0, abs=1e-9)
    assert results.curves["psrl"][0, -1] < 0.1 * results.curves["certainty_equivalence"][0, -1]


def test_resuming_a_stopped_run_does_not_redo_finished_pairs(store, monkeypatch):
    experiment = get("latent-mdp")
    cfg = experiment.config(episodes=60, log_every=20, n_seeds=2, hoeffding=False, psrl=False)
    # pairs in order: (bernstein, 0), (bernstein, 1), (certainty_equivalence, 0), (certainty_equivalence, 1)
    run_id = experiment.run(cfg, store=store, progress=lambda done, total: done >= 2 * 60)
    assert store.run_info(run_id)["status"] == "stopped"
    stopped = wide(store, run_id)
    assert {"bernstein.seed0.slope", "bernstein.seed1.slope"} <= set(stopped.columns)
    assert not any(name.startswith("certainty_equivalence") for name in stopped.columns)
    calls = []

    def counting(lmdp, learner, n_episodes, seed, **options):
        calls.append((learner.name, seed))
        return run_learner(lmdp, learner, n_episodes, seed, **options)

    monkeypatch.setattr(latent_mdp, "run_learner", counting)
    assert experiment.resume(run_id, store=store) == run_id
    assert store.run_info(run_id)["status"] == "finished"
    assert calls == [("certainty_equivalence", 0), ("certainty_equivalence", 1)]
    fresh = wide(store, experiment.run(cfg, store=store))
    resumed = wide(store, run_id)
    assert sorted(resumed.columns) == sorted(fresh.columns)
    np.testing.assert_array_equal(resumed.to_numpy(), fresh[resumed.columns].to_numpy())


def test_config_errors_name_the_field():
    experiment = get("latent-mdp")
    with pytest.raises(ConfigError, match="^horizon: planning over histories needs"):
        experiment.config(n_states=10, n_actions=5, horizon=6)
    with pytest.raises(ConfigError, match="^bernstein: expected at least one learner"):
        experiment.config(bernstein=False, hoeffding=False, certainty_equivalence=False, psrl=False)
    experiment.config(instance="revealing", n_states=10, n_actions=5, horizon=6)  # fixed 3 x 2 x 3: fine


# --- views


def test_regret_figure_is_log_log_with_slopes_in_the_legend_and_reference_rates():
    episodes = np.array([10.0, 100.0, 1000.0])
    curves = {"bernstein": np.array([np.sqrt(episodes), 3 * np.sqrt(episodes)]), "greedy": 0.5 * episodes[None]}
    figure = regret_figure(episodes, curves, {"bernstein": 0.5, "greedy": 1.0}, labels={"greedy": "CE"})
    assert figure.layout.xaxis.type == "log" and figure.layout.yaxis.type == "log"
    lines = {trace.name: trace for trace in figure.data if trace.showlegend is not False}
    assert set(lines) == {"bernstein, slope 0.50", "CE, slope 1.00", "∝ K^0.5", "∝ K^1"}
    np.testing.assert_allclose(lines["bernstein, slope 0.50"].y, 2 * np.sqrt(episodes))  # mean over the seeds
    band = next(trace for trace in figure.data if trace.fill == "toself")
    np.testing.assert_allclose(band.y, np.concatenate([3 * np.sqrt(episodes), np.sqrt(episodes)[::-1]]))
    for name, rate in (("∝ K^0.5", 0.5), ("∝ K^1", 1.0)):
        x, y = np.asarray(lines[name].x), np.asarray(lines[name].y)
        assert x[0] == 10.0 and y[0] == pytest.approx(2 * np.sqrt(10))  # through the highest first point
        np.testing.assert_allclose(np.log(y[-1] / y[0]) / np.log(x[-1] / x[0]), rate)


def test_value_gap_figure_shows_values_and_both_gaps():
    values = {
        "revealing": ReferenceValues(optimal=0.8, markov=0.5, oracle=1.0),
        "large": ReferenceValues(optimal=0.6, markov=None, oracle=0.7),
    }
    figure = value_gap_figure(values)
    bars = {trace.name: np.asarray(trace.y, dtype=float) for trace in figure.data}
    np.testing.assert_allclose(bars["V* (best history policy)"], [0.8, 0.6])
    np.testing.assert_allclose(bars["V* − V_Markov"], [0.3, np.nan])
    np.testing.assert_allclose(bars["V_oracle − V*"], [0.2, 0.1])
    assert list(figure.data[0].x) == ["revealing", "large"] and figure.layout.barmode == "group"


def test_the_panel_draws_seed_zeros_regret_per_learner(store):
    panel = ExperimentPanel("latent-mdp", store=store, episodes=40, log_every=10, n_seeds=1, hoeffding=False)
    panel.run()
    panel.wait(60)
    assert store.run_info(panel.run_id)["status"] == "finished"
    points = {trace.name: list(trace.x) for trace in panel.figure.data}
    assert points == {
        "Bernstein bonus (seed 0)": [10, 20, 30, 40],
        "Hoeffding bonus (seed 0)": [],
        "certainty equivalence (seed 0)": [10, 20, 30, 40],
        "posterior sampling (seed 0)": [10, 20, 30, 40],
    }
