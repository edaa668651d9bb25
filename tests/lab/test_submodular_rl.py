"""The submodular-rl experiment through the run store, and its figures: SubPO doubles modular PG on constant
coverage, the logged runs are theory's runs, visits respect walls, and the views draw what they are given."""

import ipywidgets as widgets
import numpy as np
import pytest

from lab import get
from lab.config import ConfigError
from lab.experiments.submodular_rl import build_mdp, load_results
from lab.submodular_views import objective_curves_figure, visits_figure, weight_map_figure
from lab.widgets import ExperimentPanel
from theory.submodular import greedy_path, solve_subpo

SMALL = dict(rows=6, cols=6, start_row=0, start_col=0, horizon=12, batch_size=64, iterations=60, n_eval=500)


def wide(store, run_id):
    return store.metrics(run_id).pivot(index="step", columns="name", values="value")


def test_subpo_doubles_modular_pg_on_constant_coverage_and_logs_theorys_runs(store):
    experiment = get("submodular-rl")
    cfg = experiment.config(**SMALL, n_seeds=2)
    run_id = experiment.run(cfg, store=store)
    assert store.run_info(run_id)["status"] == "finished"
    metrics = wide(store, run_id)
    final = metrics.loc[cfg.iterations]
    # measured: SubPO 23.0, myopic 22.5, modular 9.9, uniform 11.6; ceiling 2 (H + 1) = 26
    assert final["subpo.final_mean_F"] >= 2 * final["modular.final_mean_F"]
    assert final["myopic.final_mean_F"] >= 1.5 * final["random.final_mean_F"]
    trained = metrics[metrics["iteration"].notna()]
    np.testing.assert_array_equal(trained["iteration"], np.arange(1, 61))
    np.testing.assert_array_equal(trained["ceiling"], 26.0)
    assert trained["greedy_path.F"].iloc[0] == greedy_path(build_mdp(cfg)[1]).values[0] == 26.0
    assert final[[f"{m}.final_mean_F" for m in ("subpo", "myopic", "modular", "random")]].max() <= 26.0
    # the logged SubPO runs are theory's solve_subpo on seeds 0 and 1
    mdp = build_mdp(cfg)[1]
    theory = [solve_subpo(mdp, batch_size=64, max_iter=60, n_eval=500, seed=seed) for seed in (0, 1)]
    for seed, result in enumerate(theory):
        np.testing.assert_allclose(trained[f"subpo.seed{seed}.mean_F"], result.history["mean_objective"], atol=1e-12)
    np.testing.assert_allclose(trained["subpo.mean_F"], np.mean([r.history["mean_objective"] for r in theory], 0))
    assert final["subpo.final_mean_F"] == pytest.approx(np.mean([r.evaluation.mean for r in theory]), abs=1e-12)
    stderr = np.sqrt(sum(r.evaluation.stderr**2 for r in theory)) / 2
    assert final["subpo.final_stderr"] == pytest.approx(stderr, abs=1e-12)
    # visits: H cells per episode; SubPO spreads over many cells, modular PG parks on one
    results = load_results(store.metrics(run_id))
    for method, visits in results.visits.items():
        assert visits.shape == (6, 6) and visits.sum() == pytest.approx(12.0, abs=1e-9), method
    # measured: SubPO's busiest cell 1.0 visits (13 cells above 0.5), modular's 6.0, uniform's 3.9
    assert results.visits["subpo"].max() <= 1.5 and (results.visits["subpo"] > 0.5).sum() >= 10
    assert results.visits["modular"].max() >= 5  # it parks
    assert results.curves["subpo"].shape == (2, 60) and results.ceiling == 26.0


def test_two_rooms_walls_are_never_visited_nor_weighted(store):
    experiment = get("submodular-rl")
    cfg = experiment.config(
        objective="two_rooms", horizon=10, iterations=4, batch_size=16, n_eval=50, n_seeds=1, myopic=False,
        modular=False,
    )  # fmt: skip
    results = load_results(store.metrics(experiment.run(cfg, store=store)))
    assert results.walls.shape == (7, 14) and results.walls.sum() == 30
    assert set(results.visits) == {"subpo", "random"}
    for visits in results.visits.values():
        assert np.all(visits[results.walls] == 0) and visits.sum() == pytest.approx(10.0)
    assert np.all(results.weights[results.walls] == 0) and np.all(results.weights[~results.walls] == 1)
    assert results.ceiling == 4 + 2 * 9


@pytest.mark.parametrize("objective", ["item_collection", "experiment_design", "coverage"])
def test_every_objective_runs_and_logs_its_references(store, objective):
    experiment = get("submodular-rl")
    cfg = experiment.config(
        objective=objective, weights="gp", rows=5, cols=6, horizon=8, iterations=3, batch_size=8, n_eval=20,
        n_seeds=1, mlp=True, mlp_width=8,
    )  # fmt: skip
    run_id = experiment.run(cfg, store=store)
    results = load_results(store.metrics(run_id))
    grid, mdp = build_mdp(cfg)
    assert results.greedy_value == pytest.approx(greedy_path(mdp).values[0], abs=1e-12)
    assert set(results.final_mean) == {"subpo", "myopic", "modular", "random", "mlp"}
    if objective == "item_collection":
        assert results.ceiling == mdp.objective.max_value
        assert all(value <= results.ceiling for value in results.final_mean.values())
        assert results.weights.sum() == mdp.objective.membership.sum()  # item types per cell
    else:
        assert results.ceiling is None  # no analytic bound for design or GP-weighted coverage


def test_a_stopped_run_keeps_its_curves_and_skips_the_evaluation(store):
    experiment = get("submodular-rl")
    cfg = experiment.config(**{**SMALL, "iterations": 20}, n_seeds=1)
    run_id = experiment.run(cfg, store=store, progress=lambda done, total: done >= 3)
    assert store.run_info(run_id)["status"] == "stopped"
    results = load_results(store.metrics(run_id))
    np.testing.assert_array_equal(results.iterations, [1, 2, 3])
    assert results.final_mean == {} and results.visits == {}


def test_config_errors_name_the_field():
    experiment = get("submodular-rl")
    with pytest.raises(ConfigError, match="^start_row: cell \\(1, 5\\) is a wall"):
        experiment.config(objective="two_rooms", start_row=1, start_col=5)
    with pytest.raises(ConfigError, match="^start_row: expected a cell of the 4x4 grid"):
        experiment.config(rows=4, cols=4)
    with pytest.raises(ConfigError, match="^rows: item collection needs at least 18 cells"):
        experiment.config(objective="item_collection", rows=3, cols=4, start_row=0, start_col=0)
    with pytest.raises(ConfigError, match="^subpo: expected at least one method"):
        experiment.config(subpo=False, myopic=False, modular=False, random=False)


# --- views


def test_curves_figure_draws_mean_and_standard_error_band_and_the_ceiling():
    iterations = np.arange(1, 5)
    subpo = np.array([[1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 8.0]])
    figure = objective_curves_figure(iterations, {"subpo": subpo, "random": subpo[:1]}, ceiling=26.0)
    band, mean, random_line, ceiling = figure.data
    np.testing.assert_allclose(mean.y, [2.0, 3.0, 4.0, 6.0])
    np.testing.assert_allclose(band.y[:4], [3.0, 4.0, 5.0, 8.0])  # mean + std / sqrt(2) = mean + 1, 1, 1, 2
    np.testing.assert_allclose(band.y[4:], [4.0, 3.0, 2.0, 1.0])
    assert band.fill == "toself" and not band.showlegend
    np.testing.assert_allclose(random_line.y, subpo[0])  # one seed: no band
    assert list(ceiling.y) == [26.0, 26.0] and "26" in ceiling.name
    with pytest.raises(ValueError, match="^curves:"):
        objective_curves_figure(np.arange(3), {"subpo": subpo})


def test_heat_maps_have_the_grid_shape_and_mask_walls():
    walls = np.zeros((3, 5), dtype=bool)
    walls[1, 2] = True
    visits = {"subpo": np.arange(15.0).reshape(3, 5), "modular": np.full((3, 5), 2.0)}
    figure = visits_figure(visits, walls, start=(0, 1))
    heatmaps = [trace for trace in figure.data if trace.type == "heatmap"]
    assert len(heatmaps) == 2
    for heatmap in heatmaps:
        z = np.array(heatmap.z, dtype=float)
        assert z.shape == (3, 5) and np.isnan(z[1, 2]) and np.isfinite(np.delete(z.ravel(), 7)).all()
        assert heatmap.zmax == 14.0  # one colour scale for every policy
    assert figure.layout.yaxis.autorange == "reversed"
    assert [a.text for a in figure.layout.annotations] == ["subpo", "modular"]
    weights = weight_map_figure(np.ones((3, 5)), walls)
    assert np.array(weights.data[0].z, dtype=float).shape == (3, 5)
    with pytest.raises(ValueError, match="^walls:"):
        weight_map_figure(np.ones((3, 5)), np.zeros((5, 3), dtype=bool))


def test_the_panel_draws_each_methods_live_curve_and_the_ceiling(store):
    panel = ExperimentPanel("submodular-rl", store=store, **{**SMALL, "iterations": 5}, n_seeds=1, myopic=False)
    assert isinstance(panel.form.controls["objective"], widgets.Dropdown)
    panel.run()
    panel.wait(60)
    assert store.run_info(panel.run_id)["status"] == "finished"
    points = {trace.name: len(trace.x) for trace in panel.figure.data}
    assert points == {
        "SubPO": 5, "SubPO, myopic gain": 0, "modular PG": 5, "uniform random": 5, "SubPO, torch MLP": 0,
        "analytic ceiling": 5, "greedy oracle path": 5,
    }  # fmt: skip
