"""Sweeps on a local process pool and on a Dask LocalCluster give exactly the serial results; a sweep's seeds
aggregate into a mean and a Student-t band."""

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest

from lab import get, sweep
from lab.compare import seed_band, seed_groups
from lab.config import ConfigError, param
from lab.registry import register
from lab.sweeps import expand_grid

GRID = {"reward": ["gaussian", "binary"]}
SMALL = {"max_n": [8], "n_betas": [5], "mc_samples": [400]}


@dataclass(frozen=True)
class FailConfig:
    seed: int = param(0, help="seed; odd seeds fail", ge=0)


@register("test-fails-on-odd-seeds", kind="theory", config=FailConfig, description="fails for odd seeds")
def _fails_on_odd_seeds(cfg, run, progress):
    run.log(0, seed=cfg.seed)
    if cfg.seed % 2:
        raise RuntimeError(f"odd seed {cfg.seed}")


def _by_config(store, run_ids):
    """(reward, seed) -> wide metrics of each run."""
    out = {}
    for run_id in run_ids:
        config = store.run_info(run_id)["config"]
        wide = store.metrics(run_id).pivot(index="step", columns="name", values="value")
        out[config["reward"], config["seed"]] = wide
    return out


def _serial_reference(store):
    experiment = get("alignment-tradeoff")
    configs = expand_grid(experiment.config_cls, {**GRID, **SMALL}, seeds=[0, 1])
    return _by_config(store, [experiment.run(cfg, store=store) for cfg in configs])


def _assert_same(store, run_ids, reference):
    assert set(store.runs()["status"]) == {"finished"}
    got = _by_config(store, run_ids)
    assert got.keys() == reference.keys() and len(got) == 4
    for key, frame in got.items():
        np.testing.assert_array_equal(frame.to_numpy(), reference[key].to_numpy())


def test_expand_grid_validates_everything_first():
    config_cls = get("alignment-tradeoff").config_cls
    configs = expand_grid(config_cls, {"reward": ["gaussian", "binary"], "max_n": [4, 8]}, seeds=[0, 1, 2])
    assert len(configs) == 12 and {c.seed for c in configs} == {0, 1, 2}
    with pytest.raises(ConfigError, match="max_n: expected an integer"):
        expand_grid(config_cls, {"max_n": [4, "x"]}, seeds=[0])
    with pytest.raises(ConfigError, match="nope: unknown field"):
        expand_grid(config_cls, {"nope": [1]}, seeds=[0])
    with pytest.raises(ConfigError, match="max_n: grid values must be a non-empty list"):
        expand_grid(config_cls, {"max_n": 4}, seeds=[0])


def test_bad_grid_starts_no_run_and_bad_executor_is_named(store):
    with pytest.raises(ConfigError):
        sweep("alignment-tradeoff", {"max_n": [0]}, seeds=[0], store=store, progress=False)
    assert store.runs().empty
    with pytest.raises(TypeError, match="executor"):
        sweep("alignment-tradeoff", GRID, seeds=[0], executor=object(), store=store, progress=False)


def test_local_process_pool_matches_serial_runs(tmp_path):
    from lab.runs import RunStore

    reference = _serial_reference(RunStore(tmp_path / "serial.sqlite"))
    store = RunStore(tmp_path / "pool.sqlite")
    run_ids = sweep("alignment-tradeoff", {**GRID, **SMALL}, seeds=[0, 1], store=store, progress=False)
    _assert_same(store, run_ids, reference)


@pytest.mark.slow
def test_dask_local_cluster_matches_serial_runs(tmp_path):
    distributed = pytest.importorskip("distributed")
    from lab.runs import RunStore

    reference = _serial_reference(RunStore(tmp_path / "serial.sqlite"))
    store = RunStore(tmp_path / "dask.sqlite")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        run_ids = sweep("alignment-tradeoff", {**GRID, **SMALL}, seeds=[0, 1], executor=client, store=store)
        assert client.status == "running"  # the caller's client is left open
    _assert_same(store, run_ids, reference)


def test_a_failing_job_is_recorded_as_failed_with_its_rows(store):
    with ThreadPoolExecutor(2) as pool:
        run_ids = sweep("test-fails-on-odd-seeds", {}, seeds=[0, 1, 2], executor=pool, store=store, progress=False)
    statuses = {store.run_info(i)["config"]["seed"]: store.run_info(i) for i in run_ids}
    assert statuses[0]["status"] == statuses[2]["status"] == "finished"
    assert statuses[1]["status"] == "failed" and "RuntimeError: odd seed 1" in statuses[1]["message"]
    assert store.metrics(run_ids[1])["value"].tolist() == [1.0]


def test_a_sweeps_seeds_aggregate_into_a_hand_computed_mean_and_t_band(store):
    grid = {"noises": ["1", "0"], "drifts": ["0.2"], "n_seeds": [1], "horizon": [100], "log_every": [10]}
    with ThreadPoolExecutor(1) as pool:
        run_ids = sweep("sea-regret", grid, seeds=[0, 1, 2, 3], executor=pool, store=store, progress=False)
    noisy, quiet = seed_groups(store.runs())
    assert noisy == run_ids[:4] and quiet == run_ids[4:]
    band = seed_band(store.metrics(noisy), "oomd.regret.c0", x="round")
    curves = np.array([store.metrics(i, "oomd.regret.c0").sort_values("step")["value"] for i in noisy])
    t_975_3 = 3.182446305284263  # Student-t quantile, 3 degrees of freedom
    half_width = t_975_3 * curves.std(axis=0, ddof=1) / math.sqrt(4)
    np.testing.assert_array_equal(band["x"], np.arange(10, 101, 10))
    np.testing.assert_allclose(band["mean"], curves.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(band["low"], curves.mean(axis=0) - half_width, rtol=1e-9)
    np.testing.assert_allclose(band["high"], curves.mean(axis=0) + half_width, rtol=1e-9)
    assert set(band["n"]) == {4}
