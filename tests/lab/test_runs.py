"""The SQLite run store: logging, concurrency across processes, and kills mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from lab.runs import MemoryRun, RunStore, default_store_path

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from lab.runs import RunStore
    path, steps, pause, go = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    store = RunStore(path)
    run = store.start("writer", "theory", {"steps": steps})
    print(run.id, flush=True)
    while go and not os.path.exists(go):  # start line: every writer logs at the same time
        time.sleep(0.01)
    for step in range(steps):
        run.log(step, a=step, b=2.0 * step, c=-step)
        time.sleep(pause)
    run.finish()
    """
)


def _writer(path, steps, pause, go=""):
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(steps), str(pause), str(go)], stdout=subprocess.PIPE, text=True
    )


def test_log_and_read_back(store):
    with store.start("demo", "theory", {"beta": 0.5}) as run:
        run.log(0, loss=1.0, accuracy=0.25)
        run.log(1, loss=0.5, accuracy=np.float32(0.5))
        run.log(1, loss=0.4)  # logging a step again overwrites it
    runs = store.runs()
    assert runs.loc[0, "status"] == "finished" and runs.loc[0, "config"] == {"beta": 0.5}
    assert runs.loc[0, "kind"] == "theory" and runs.loc[0, "finished"] >= runs.loc[0, "started"]
    frame = store.metrics(run.id)
    assert list(frame.columns) == ["run_id", "step", "name", "value", "time"]
    got = frame.set_index(["step", "name"])["value"].to_dict()
    assert got == {(0, "accuracy"): 0.25, (0, "loss"): 1.0, (1, "accuracy"): 0.5, (1, "loss"): 0.4}
    assert store.metrics([run.id], names="loss")["value"].tolist() == [1.0, 0.4]
    assert run.logged_steps("loss") == {0, 1}


def test_nan_round_trips_and_bad_values_are_named(store):
    run = store.start("demo", "llm", {})
    run.log(0, gap=float("nan"), kl=float("inf"))
    values = store.metrics(run.id).set_index("name")["value"]
    assert np.isnan(values["gap"]) and values["kl"] == np.inf
    with pytest.raises(TypeError, match="metric 'loss'"):
        run.log(1, loss="low")
    with pytest.raises(TypeError, match="step"):
        run.log(1.5, loss=1.0)
    with pytest.raises(ValueError, match="kind"):
        store.start("demo", "rl", {})
    with pytest.raises(TypeError, match="config"):
        store.start("demo", "theory", {"f": object()})


def test_exceptions_mark_the_run_failed_and_finished_runs_refuse_logs(store):
    with pytest.raises(ZeroDivisionError), store.start("demo", "theory", {}) as run:
        run.log(0, x=1.0)
        1 / 0  # noqa: B018
    info = store.run_info(run.id)
    assert info["status"] == "failed" and "ZeroDivisionError" in info["message"]
    with pytest.raises(RuntimeError, match="finished"):
        run.log(1, x=2.0)


def test_default_path_honours_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("LAB_STORE", raising=False)
    assert default_store_path() == default_store_path().__class__("runs/lab.sqlite")
    monkeypatch.setenv("LAB_STORE", str(tmp_path / "x.sqlite"))
    assert RunStore().path == tmp_path / "x.sqlite"
    with pytest.raises(ValueError, match="path"):
        RunStore(tmp_path)


def test_four_processes_logging_concurrently_lose_no_row(tmp_path):
    path, steps = tmp_path / "lab.sqlite", 400
    RunStore(path)  # create the schema first, as a user's store already would be
    go = tmp_path / "go"
    writers = [_writer(path, steps, 0.0, go) for _ in range(4)]
    for writer in writers:
        writer.stdout.readline()  # its run is started
    go.touch()
    for writer in writers:
        assert writer.wait(timeout=300) == 0
    store = RunStore(path)
    runs = store.runs()
    assert len(runs) == 4 and set(runs["status"]) == {"finished"}
    assert runs["started"].max() < runs["finished"].min()  # all four runs were open at the same time
    frame = store.metrics(runs["id"])
    assert len(frame) == 4 * steps * 3
    for _, one in frame.groupby("run_id"):
        wide = one.pivot(index="step", columns="name", values="value")
        np.testing.assert_array_equal(wide.index, np.arange(steps))
        np.testing.assert_array_equal(wide["b"], 2.0 * wide["a"])


def test_process_killed_mid_run_leaves_readable_store_marked_interrupted(tmp_path):
    path = tmp_path / "lab.sqlite"
    writer = _writer(path, 100_000, 0.002)
    run_id = int(writer.stdout.readline())
    store = RunStore(path)
    while len(store.metrics(run_id)) < 60:
        time.sleep(0.05)
    assert store.runs().loc[0, "status"] == "running"  # alive: reported as running
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    reopened = RunStore(path)
    info = reopened.run_info(run_id)
    assert info["status"] == "interrupted" and info["finished"] is None
    frame = reopened.metrics(run_id)
    counts = frame.groupby("step")["name"].count()
    assert len(counts) >= 20 and set(counts) == {3}  # every saved step is whole: one transaction per log
    resumed = reopened.resume(run_id)
    resumed.log(int(counts.index.max()) + 1, a=1.0, b=2.0, c=-1.0)
    resumed.finish()
    assert reopened.run_info(run_id)["status"] == "finished"
    with pytest.raises(ValueError, match="run_id: run .* is finished"):
        reopened.resume(run_id)


def test_memory_run_collects_rows_like_a_run():
    run = MemoryRun()
    run.log(0, x=1.0)
    run.log(0, x=2.0, y=float("nan"))
    assert sorted(run.as_rows(), key=str) == sorted([(0, "x", 2.0), (0, "y", None)], key=str)
    assert run.logged_steps("x") == {0}


def test_runs_filter_artifacts_and_delete(store):
    a = store.start("a", "theory", {})
    store.start("b", "llm", {})
    a.log(0, x=1.0)
    assert store.runs(kind="llm")["experiment"].tolist() == ["b"]
    assert store.runs(experiment="a", status="running")["id"].tolist() == [a.id]
    checkpoint = a.artifact_dir / "model.pt"
    checkpoint.write_bytes(b"weights")
    assert checkpoint.parent == store.path.parent / "artifacts" / str(a.id)
    store.delete(a.id)
    assert not checkpoint.exists()
    assert store.metrics(a.id).empty and isinstance(store.runs(), pd.DataFrame) and len(store.runs()) == 1
