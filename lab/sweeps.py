"""Sweeps: an experiment over a grid of hyperparameters times seeds, on any executor.

Jobs go through the ``concurrent.futures.Executor`` interface: a local process pool by
default, or a Dask distributed ``Client`` (``Client("tcp://scheduler:8786")`` on a real
cluster, ``Client(LocalCluster(...))`` on one machine). Workers do not touch the store:
each runs its job against an in-memory logger and returns the rows, and the caller
writes them, so only one process writes to the database and workers need no shared disk.
Each job's run is recorded as ``running`` when submitted and finished as results arrive.
:func:`open_executor` opens any of the three from the words ``python -m lab sweep`` takes
(``--workers N``, ``--scheduler local``, ``--scheduler tcp://host:8786``).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from lab import registry
from lab.config import ConfigError, as_dict, make_config
from lab.runs import MemoryRun, RunStore


@dataclass(frozen=True)
class JobOutcome:
    """What a worker sends back: the logged rows and how the job ended."""

    rows: list[tuple[int, str, float | None]]
    status: str
    message: str


def run_job(name: str, config: dict[str, Any]) -> JobOutcome:
    """Run one job in a worker process; errors become a ``failed`` outcome carrying the rows logged so far."""
    experiment = registry.get(name)
    logger = MemoryRun()
    try:
        experiment.execute(make_config(experiment.config_cls, config), logger)
    except Exception as exc:
        return JobOutcome(logger.as_rows(), "failed", f"{type(exc).__name__}: {exc}")
    return JobOutcome(logger.as_rows(), "finished", "")


def expand_grid(config_cls: type, grid: Mapping[str, Sequence[Any]], seeds: Sequence[int]) -> list[Any]:
    """Every combination of ``grid`` values times ``seeds``, validated before anything runs."""
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid: expected a mapping of field name to a list of values, got {type(grid).__name__}")
    for key, values in grid.items():
        if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
            raise ConfigError(key, f"grid values must be a non-empty list, got {values!r}")
    seeds = list(seeds)
    if seeds and "seed" not in {f for f in config_cls.__dataclass_fields__}:
        raise ConfigError("seed", f"{config_cls.__name__} has no seed field to sweep over")
    keys = list(grid)
    configs = []
    for combination in itertools.product(*(grid[key] for key in keys)):
        values = dict(zip(keys, combination, strict=True))
        for seed in seeds or [None]:
            configs.append(make_config(config_cls, values if seed is None else {**values, "seed": seed}))
    return configs


def default_workers() -> int:
    """Local worker processes when none are asked for: one per core, at most 8."""
    return max(1, min(os.cpu_count() or 1, 8))


def default_executor(max_workers: int | None = None) -> ProcessPoolExecutor:
    """A local process pool; spawned (not forked) workers, which is safe from a threaded Jupyter kernel."""
    return ProcessPoolExecutor(max_workers or default_workers(), mp_context=multiprocessing.get_context("spawn"))


LOCAL_SCHEDULER = "local"
"""The ``scheduler`` word for a Dask ``LocalCluster`` on this machine (any other value is a scheduler's address)."""
CONNECT_TIMEOUT_S = 30


@contextlib.contextmanager
def open_executor(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """The executor a sweep runs on, closed on exit; bad arguments raise ConfigError naming ``scheduler``/``workers``.

    ``scheduler`` None: a local process pool of ``workers`` processes (default: up to 8, one per core).
    ``"local"``: a Dask ``LocalCluster`` of ``workers`` one-thread worker processes, and its ``Client``. An address
    such as ``"tcp://scheduler-host:8786"``: a Dask ``Client`` of that running scheduler, whose cluster decides the
    workers (so ``workers`` must be None); the cluster itself is left running.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError("workers", f"expected a positive integer, got {workers!r}")
    if scheduler is None:
        with default_executor(workers) as pool:
            yield pool
        return
    if scheduler != LOCAL_SCHEDULER and workers is not None:
        raise ConfigError("workers", f"the cluster behind {scheduler} decides its workers; leave workers unset")
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("scheduler", "a Dask scheduler needs dask.distributed: pip install -e '.[dist]'") from None
    with contextlib.ExitStack() as stack:
        if scheduler == LOCAL_SCHEDULER:
            cluster = LocalCluster(
                n_workers=workers or default_workers(), threads_per_worker=1, processes=True, dashboard_address=None
            )
            client = stack.enter_context(Client(stack.enter_context(cluster)))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout=CONNECT_TIMEOUT_S))
            except (OSError, ValueError) as error:
                raise ConfigError("scheduler", f"cannot connect to {scheduler!r}: {error}") from None
        yield client


def sweep(
    name: str,
    grid: Mapping[str, Sequence[Any]],
    seeds: Sequence[int] = (0,),
    *,
    executor: Any = None,
    store: RunStore | None = None,
    progress: bool = True,
) -> list[int]:
    """Run experiment ``name`` on every grid point and seed; returns the run ids in grid order.

    ``executor``: None for a local process pool (closed afterwards), any
    ``concurrent.futures.Executor``, or a Dask ``Client`` (its executor is used; the client is
    left open). Results are written to ``store`` as each job completes, so an interrupted
    sweep keeps every finished job.
    """
    experiment = registry.get(name)
    configs = expand_grid(experiment.config_cls, grid, seeds)
    store = store if store is not None else RunStore()
    owned = executor is None
    if owned:
        executor = default_executor()
    elif hasattr(executor, "get_executor"):  # a dask.distributed Client
        executor = executor.get_executor()
    if not isinstance(executor, Executor):
        raise TypeError(f"executor: expected a concurrent.futures.Executor or a Dask Client, got {executor!r}")
    runs = [store.start(name, experiment.kind, as_dict(cfg)) for cfg in configs]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(runs), desc=f"sweep {name}")
    unfinished = {run.id: run for run in runs}
    futures = {}
    try:
        futures = {executor.submit(run_job, name, as_dict(cfg)): run for cfg, run in zip(configs, runs, strict=True)}
        for future in as_completed(futures):
            run = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # the worker itself died (killed, out of memory, ...)
                outcome = JobOutcome([], "failed", f"worker error: {type(exc).__name__}: {exc}")
            run.log_rows(outcome.rows)
            run.finish(outcome.status, outcome.message)
            del unfinished[run.id]
            if bar is not None:
                bar.update()
    except BaseException:
        for future in futures:
            future.cancel()
        for run in unfinished.values():
            run.finish("interrupted", "the sweep stopped before this job returned")
        raise
    finally:
        if bar is not None:
            bar.close()
        if owned:
            executor.shutdown(cancel_futures=True)
    return [run.id for run in runs]
