"""``python -m lab``: list, describe, run, runs, resume, sweep; bad values fail in one line and start no run."""

import socket
import subprocess
import sys

import numpy as np
import pytest

from lab import get
from lab.cli import main
from lab.runs import RunStore


def test_module_entry_point_lists_experiments():
    out = subprocess.run([sys.executable, "-m", "lab", "list"], capture_output=True, text=True, check=True).stdout
    assert "alignment-tradeoff" in out and "theory" in out


def test_run_then_list_runs(tmp_path, capsys):
    path = str(tmp_path / "s.sqlite")
    args = ["--set", "max_n=8", "--set", "mc_samples=0", "--set", "n_betas=5", "--store", path, "--quiet"]
    assert main(["run", "alignment-tradeoff", *args]) == 0
    assert "run 1 (alignment-tradeoff) finished" in capsys.readouterr().out
    assert main(["runs", "--store", path]) == 0
    assert "alignment-tradeoff" in capsys.readouterr().out
    store = RunStore(path)
    assert store.run_info(1)["config"]["max_n"] == 8
    assert sorted(store.metrics(1)["step"].unique()) == list(range(0, 9))  # betas 0..4, N 1..8


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("max_n=abc", "error: max_n: expected an integer, got 'abc'"),
        ("max_n=0", "error: max_n: expected a value >= 1 and <= 4096, got 0"),
        ("nope=1", "error: nope: unknown field"),
        ("reward=huge", "error: reward: expected one of 'gaussian', 'binary', got 'huge'"),
        ("max_n", "error: max_n: expected key=value"),
    ],
)
def test_bad_values_give_one_line_and_start_no_run(tmp_path, capsys, assignment, message):
    path = str(tmp_path / "s.sqlite")
    assert main(["run", "alignment-tradeoff", "--set", assignment, "--store", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert RunStore(path).runs().empty


def test_unknown_experiment_and_describe(tmp_path, capsys):
    assert main(["run", "nope", "--store", str(tmp_path / "s.sqlite")]) == 2
    assert "error: name: no experiment 'nope'; known: alignment-tradeoff" in capsys.readouterr().err
    assert main(["describe", "alignment-tradeoff"]) == 0
    out = capsys.readouterr().out
    assert "max_n" in out and ">= 1 and <= 4096" in out and "one of ['gaussian', 'binary']" in out


def test_resume_a_stopped_run_from_the_command_line(tmp_path, capsys):
    store = RunStore(tmp_path / "s.sqlite")
    experiment = get("alignment-tradeoff")
    run_id = experiment.run(experiment.config(max_n=8, mc_samples=0), store=store, progress=lambda d, t: d == 3)
    assert store.run_info(run_id)["status"] == "stopped"
    assert main(["resume", str(run_id), "--store", str(store.path), "--quiet"]) == 0
    assert f"run {run_id} (alignment-tradeoff) finished" in capsys.readouterr().out
    assert main(["resume", str(run_id), "--store", str(store.path)]) == 2
    assert "only stopped, failed, interrupted runs resume" in capsys.readouterr().err
    assert main(["resume", "99", "--store", str(store.path)]) == 2
    assert "run_id: no run 99" in capsys.readouterr().err


SWEEP_FIXED = ["--set", "max_n=8", "--set", "mc_samples=400", "--set", "n_betas=5"]


def _wide(store, run_id):
    return store.metrics(run_id).pivot(index="step", columns="name", values="value")


def _wide_by_reward_and_seed(store, run_ids):
    configs = {run_id: store.run_info(run_id)["config"] for run_id in run_ids}
    return {(config["reward"], config["seed"]): _wide(store, run_id) for run_id, config in configs.items()}


def _assert_sweep_matches_serial_runs(tmp_path, store):
    runs = store.runs()
    assert len(runs) == 4 and set(runs["status"]) == {"finished"}
    for config in runs["config"]:
        assert (config["max_n"], config["mc_samples"], config["n_betas"]) == (8, 400, 5)
    swept = _wide_by_reward_and_seed(store, runs["id"])
    assert set(swept) == {("gaussian", 0), ("gaussian", 1), ("binary", 0), ("binary", 1)}
    serial_store = RunStore(tmp_path / "serial.sqlite")
    experiment = get("alignment-tradeoff")
    for (reward, seed), wide in swept.items():
        cfg = experiment.config(max_n=8, mc_samples=400, n_betas=5, reward=reward, seed=seed)
        reference = _wide(serial_store, experiment.run(cfg, store=serial_store))
        np.testing.assert_array_equal(wide.to_numpy(), reference.to_numpy())
        assert list(wide.columns) == list(reference.columns)


def test_sweep_runs_a_2x2_grid_like_serial_runs_and_prints_a_summary(tmp_path, capsys):
    path = str(tmp_path / "s.sqlite")
    grid = ["--grid", "reward=gaussian,binary", "--seeds", "0,1", "--workers", "1"]
    assert main(["sweep", "alignment-tradeoff", *SWEEP_FIXED, *grid, "--store", path, "--quiet"]) == 0
    store = RunStore(path)
    _assert_sweep_matches_serial_runs(tmp_path, store)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "point", "seed", "status"]
    rows = [line.split() for line in lines[1:5]]
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]
    assert [(row[1], row[2], row[3]) for row in rows] == [
        ("reward=gaussian", "0", "finished"),
        ("reward=gaussian", "1", "finished"),
        ("reward=binary", "0", "finished"),
        ("reward=binary", "1", "finished"),
    ]
    assert lines[5] == f"[store {path}]"


@pytest.mark.slow
def test_sweep_on_a_dask_local_cluster(tmp_path, capsys):
    pytest.importorskip("distributed")
    path = str(tmp_path / "s.sqlite")
    grid = ["--grid", "reward=gaussian,binary", "--seeds", "0,1", "--scheduler", "local", "--workers", "2"]
    assert main(["sweep", "alignment-tradeoff", *SWEEP_FIXED, *grid, "--store", path, "--quiet"]) == 0
    _assert_sweep_matches_serial_runs(tmp_path, RunStore(path))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--grid", "max_n=4,x"], "error: max_n: expected an integer, got 'x'"),
        (["--grid", "max_n=4,"], "error: max_n: expected an integer, got ''"),
        (["--grid", "max_n=0,4"], "error: max_n: expected a value >= 1 and <= 4096, got 0"),
        (["--grid", "max_n"], "error: max_n: expected key=v1,v2,..."),
        (["--grid", "nope=1,2"], "error: nope: unknown field"),
        (["--grid", "reward=gaussian,huge"], "error: reward: expected one of 'gaussian', 'binary', got 'huge'"),
        (["--set", "mc_samples=3"], "error: mc_samples: expected 0 or at least 2*max_n = 128"),
        (["--set", "max_n=8", "--grid", "max_n=4,8"], "error: max_n: given more than once across --set and --grid"),
        (["--grid", "seed=1,2", "--seeds", "0"], "error: seed: give seeds with --seeds or with --set/--grid"),
        (["--seeds", "0,a"], "error: seeds: expected comma-separated integers, got '0,a'"),
        (["--workers", "two"], "error: workers: expected comma-separated integers, got 'two'"),
        (["--workers", "0"], "error: workers: expected a positive integer, got 0"),
        (["--scheduler", "tcp://127.0.0.1:8786", "--workers", "2"], "error: workers: the cluster behind tcp://"),
    ],
)
def test_sweep_bad_input_gives_one_line_and_starts_no_run(tmp_path, capsys, arguments, message):
    path = str(tmp_path / "s.sqlite")
    assert main(["sweep", "alignment-tradeoff", *arguments, "--store", path, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert RunStore(path).runs().empty


def test_sweep_of_an_unknown_experiment_or_to_an_unreachable_scheduler(tmp_path, capsys, monkeypatch):
    path = str(tmp_path / "s.sqlite")
    assert main(["sweep", "nope", "--grid", "seed=1,2", "--store", path]) == 2
    assert capsys.readouterr().err.startswith("error: name: no experiment 'nope'")
    pytest.importorskip("distributed")
    monkeypatch.setattr("lab.sweeps.CONNECT_TIMEOUT_S", 1)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    assert main(["sweep", "alignment-tradeoff", "--scheduler", address, "--store", path, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: scheduler: cannot connect to '{address}'") and err.count("\n") == 1
    assert RunStore(path).runs().empty
