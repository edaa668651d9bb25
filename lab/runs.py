"""The run store: one embedded SQLite database for every run of every experiment.

Tables (see ``SCHEMA``): ``runs`` holds one row per run (experiment, kind ``theory`` or
``llm``, config as JSON, status, timestamps, and the host/pid of the process that owns
it); ``metrics`` is long format, one row per (run, metric name, step).

Durability: the database is in WAL mode with a busy timeout, and every ``log`` is its
own transaction, so several processes can log at once and a process killed at any
moment leaves a readable store holding everything logged before the kill. Large files
(checkpoints) go in ``artifacts/<run id>/`` beside the database. Such a run
stays ``running`` in its row; the store notices the owning process is gone and reports
(and records) it as ``interrupted``, never ``finished``. ``resume`` reopens it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_PATH = Path("runs") / "lab.sqlite"
KINDS = ("theory", "llm")
STATUSES = ("running", "finished", "stopped", "failed", "interrupted")
RESUMABLE = ("stopped", "failed", "interrupted")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment  TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('theory', 'llm')),
    config      TEXT NOT NULL,
    status      TEXT NOT NULL,
    message     TEXT NOT NULL DEFAULT '',
    started     REAL NOT NULL,
    finished    REAL,
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    pid_start   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (experiment, started);
CREATE TABLE IF NOT EXISTS metrics (
    run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name    TEXT NOT NULL,
    step    INTEGER NOT NULL,
    value   REAL,
    time    REAL NOT NULL,
    PRIMARY KEY (run_id, name, step)
) WITHOUT ROWID;
"""

BUSY_TIMEOUT_S = 60.0


def default_store_path() -> Path:
    """``$LAB_STORE`` when set, else ``runs/lab.sqlite`` under the current directory."""
    return Path(os.environ.get("LAB_STORE") or DEFAULT_PATH)


def _process_start(pid: int) -> str:
    """A token that differs between two processes that had the same pid (Linux: start time in ticks)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return ""
    return "" if fields[0] in ("Z", "X") else fields[19]


def _process_alive(pid: int, start_token: str) -> bool:
    if os.path.isdir("/proc"):
        token = _process_start(pid)
        return bool(token) and token == start_token
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _as_metric_value(name: str, value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"metric {name!r}: expected a number, got {type(value).__name__} {value!r}") from None
    return None if math.isnan(number) else number  # SQLite stores NaN as NULL; we say so explicitly


class RunStore:
    """An SQLite run store at ``path`` (default: :func:`default_store_path`), created on first use.

    One connection per thread and process, so a store object can be shared with worker threads.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        if self.path.exists() and self.path.is_dir():
            raise ValueError(f"path: expected a database file, got the directory {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connect()  # creates the schema on first use
        self.reconcile()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # never reuse a connection across fork
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            local.db, local.pid = db, os.getpid()
        return local.db

    class _Transaction:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type, exc, tb) -> None:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def _write(self) -> RunStore._Transaction:
        return RunStore._Transaction(self._connect())

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._connect().execute(sql, params).fetchall()

    # -- runs ----------------------------------------------------------------------------------
    def start(self, experiment: str, kind: str, config: Mapping[str, Any]) -> Run:
        """Record a new run as ``running`` and return it for logging."""
        if not isinstance(experiment, str) or not experiment:
            raise ValueError(f"experiment: expected a non-empty name, got {experiment!r}")
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
        try:
            config_json = json.dumps(dict(config), sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"config: expected a JSON-serialisable mapping ({exc})") from None
        pid = os.getpid()
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO runs (experiment, kind, config, status, started, host, pid, pid_start)"
                " VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
                (experiment, kind, config_json, time.time(), socket.gethostname(), pid, _process_start(pid)),
            )
            run_id = cursor.lastrowid
        return Run(self, run_id, experiment, kind, json.loads(config_json))

    def resume(self, run_id: int) -> Run:
        """Reopen a run that did not finish (stopped, failed or interrupted) to log more steps."""
        self.reconcile()
        info = self.run_info(run_id)
        if info["status"] not in RESUMABLE:
            raise ValueError(f"run_id: run {run_id} is {info['status']}; only {', '.join(RESUMABLE)} runs resume")
        pid = os.getpid()
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = 'running', message = '', finished = NULL, host = ?, pid = ?, pid_start = ?"
                " WHERE id = ?",
                (socket.gethostname(), pid, _process_start(pid), run_id),
            )
        return Run(self, run_id, info["experiment"], info["kind"], info["config"])

    def _set_status(self, run_id: int, status: str, message: str) -> None:
        if status not in STATUSES or status == "running":
            raise ValueError(f"status: expected one of {STATUSES[1:]}, got {status!r}")
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = ?, message = ?, finished = ? WHERE id = ?",
                (status, message, time.time(), run_id),
            )

    def reconcile(self) -> list[int]:
        """Mark as ``interrupted`` every ``running`` run whose owning process on this host has ended."""
        host = socket.gethostname()
        rows = self._read("SELECT id, pid, pid_start FROM runs WHERE status = 'running' AND host = ?", (host,))
        dead = [run_id for run_id, pid, token in rows if not _process_alive(pid, token)]
        if dead:
            with self._write() as db:
                db.executemany(
                    "UPDATE runs SET status = 'interrupted', message = 'its process ended before the run finished'"
                    " WHERE id = ? AND status = 'running'",
                    [(run_id,) for run_id in dead],
                )
        return dead

    def run_info(self, run_id: int) -> dict[str, Any]:
        rows = self._read(
            "SELECT id, experiment, kind, config, status, message, started, finished FROM runs WHERE id = ?",
            (int(run_id),),
        )
        if not rows:
            raise KeyError(f"run_id: no run {run_id} in {self.path}")
        keys = ("id", "experiment", "kind", "config", "status", "message", "started", "finished")
        info = dict(zip(keys, rows[0], strict=True))
        info["config"] = json.loads(info["config"])
        return info

    def runs(self, experiment: str | None = None, kind: str | None = None, status: str | None = None) -> pd.DataFrame:
        """All runs, newest last, optionally filtered; ``config`` comes back as a dict per row."""
        self.reconcile()
        clauses, params = [], []
        for column, value in (("experiment", experiment), ("kind", kind), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        frame = pd.read_sql_query(
            f"SELECT id, experiment, kind, status, started, finished, message, config FROM runs{where} ORDER BY id",
            self._connect(),
            params=params,
        )
        frame["config"] = frame["config"].map(json.loads)
        for column in ("started", "finished"):
            frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
        return frame

    def metrics(self, run_ids: int | Iterable[int], names: str | Iterable[str] | None = None) -> pd.DataFrame:
        """Long-format metrics (run_id, step, name, value, time) of the given runs, ordered by run and step."""
        ids = [int(run_ids)] if isinstance(run_ids, int) else [int(i) for i in run_ids]
        wanted = [names] if isinstance(names, str) else list(names) if names is not None else None
        sql = f"SELECT run_id, step, name, value, time FROM metrics WHERE run_id IN ({','.join('?' * len(ids))})"
        params: list[Any] = list(ids)
        if wanted is not None:
            sql += f" AND name IN ({','.join('?' * len(wanted))})"
            params += wanted
        frame = pd.read_sql_query(sql + " ORDER BY run_id, step, name", self._connect(), params=params)
        frame["value"] = frame["value"].astype(float)
        return frame

    def artifact_dir(self, run_id: int) -> Path:
        """The folder for a run's large files (checkpoints, samples): ``artifacts/<run_id>/`` beside the database."""
        folder = self.path.parent / "artifacts" / str(int(run_id))
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def delete(self, run_id: int) -> None:
        """Remove a run, its metrics and its artifacts."""
        with self._write() as db:
            db.execute("DELETE FROM runs WHERE id = ?", (int(run_id),))
        shutil.rmtree(self.path.parent / "artifacts" / str(int(run_id)), ignore_errors=True)


class RunLogger:
    """What an experiment logs through: a stored :class:`Run`, or a :class:`MemoryRun` in a sweep worker."""

    def log(self, step: int, **metrics: float) -> None:
        """Record ``metrics`` at ``step`` (logging a step again overwrites it)."""
        self.log_rows((step, name, value) for name, value in metrics.items())

    def log_rows(self, rows: Iterable[tuple[int, str, float]]) -> None:
        raise NotImplementedError

    def logged_steps(self, name: str) -> set[int]:
        raise NotImplementedError


def _checked_rows(rows: Iterable[tuple[int, str, float]]) -> list[tuple[int, str, float | None]]:
    checked = []
    for step, name, value in rows:
        if isinstance(step, bool) or not hasattr(step, "__index__"):
            raise TypeError(f"step: expected an integer, got {step!r}")
        checked.append((int(step), str(name), _as_metric_value(name, value)))
    return checked


class MemoryRun(RunLogger):
    """Collects rows in memory; a sweep worker returns them to the caller, which stores them."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], float | None] = {}

    def log_rows(self, rows: Iterable[tuple[int, str, float]]) -> None:
        for step, name, value in _checked_rows(rows):
            self.rows[name, step] = value

    def logged_steps(self, name: str) -> set[int]:
        return {step for metric, step in self.rows if metric == name}

    def as_rows(self) -> list[tuple[int, str, float | None]]:
        return [(step, name, value) for (name, step), value in self.rows.items()]


class Run(RunLogger):
    """A run being recorded: ``log`` metrics step by step, then ``finish``.

    Used as a context manager it finishes itself: ``finished`` on a normal exit, ``failed``
    (with the error) on an exception, ``interrupted`` on KeyboardInterrupt.
    """

    def __init__(self, store: RunStore, run_id: int, experiment: str, kind: str, config: dict[str, Any]) -> None:
        self.store, self.id, self.experiment, self.kind, self.config = store, run_id, experiment, kind, config
        self._started = time.time()
        self._open = True
        self._subscribers: list[Callable[[list[tuple[int, str, float | None]]], None]] = []

    def __repr__(self) -> str:
        return f"Run(id={self.id}, experiment={self.experiment!r}, store={str(self.store.path)!r})"

    def log_rows(self, rows: Iterable[tuple[int, str, float]]) -> None:
        """Record (step, name, value) rows in one transaction: one step's metrics, or a whole history."""
        if not self._open:
            raise RuntimeError(f"run {self.id} is finished; resume it to log more")
        now = time.time() - self._started
        checked = _checked_rows(rows)
        with self.store._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, name, step, value, time) VALUES (?, ?, ?, ?, ?)",
                [(self.id, name, step, value, now) for step, name, value in checked],
            )
        for subscriber in self._subscribers:
            subscriber(checked)

    def subscribe(self, callback: Callable[[list[tuple[int, str, float | None]]], None]) -> None:
        """Call ``callback(rows)`` with the (step, name, value) rows of every later ``log``, once stored."""
        self._subscribers.append(callback)

    def logged_steps(self, name: str) -> set[int]:
        """Steps at which ``name`` has been logged, so a resumed run can skip them."""
        rows = self.store._read("SELECT step FROM metrics WHERE run_id = ? AND name = ?", (self.id, name))
        return {step for (step,) in rows}

    @property
    def artifact_dir(self) -> Path:
        """This run's folder for large files; see :meth:`RunStore.artifact_dir`."""
        return self.store.artifact_dir(self.id)

    def finish(self, status: str = "finished", message: str = "") -> None:
        self.store._set_status(self.id, status, message)
        self._open = False

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._open:
            return
        if exc_type is None:
            self.finish()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("interrupted", "interrupted by the user")
        else:
            self.finish("failed", f"{exc_type.__name__}: {exc}")
