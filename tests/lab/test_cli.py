"""``python -m lab``: list, describe, run, runs, resume; bad values fail in one line and start no run."""

import subprocess
import sys

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
