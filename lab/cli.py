"""Command line: ``python -m lab list | describe NAME | run NAME --set k=v ... | resume ID | runs | sweep NAME ...``.

``sweep NAME --set k=v --grid k=v1,v2 --seeds 0,1,2 [--workers N] [--scheduler local|tcp://host:8786]`` runs every
grid point times every seed through :func:`lab.sweep` and prints one line per run made.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from lab import registry
from lab.config import ConfigError, fields, parse_assignments
from lab.runs import RunStore
from lab.sweeps import expand_grid, open_executor, sweep


class _TqdmProgress:
    """A text progress bar that follows ``progress(done, total)`` calls."""

    def __init__(self, description: str, enabled: bool) -> None:
        self.description, self.enabled, self.bar = description, enabled, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.description)
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description="Run the lab's experiments and list their runs.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the registered experiments")
    describe = commands.add_parser("describe", help="show an experiment's config fields")
    describe.add_argument("name")
    run = commands.add_parser("run", help="run an experiment")
    run.add_argument("name")
    run.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE")
    resume = commands.add_parser("resume", help="continue an unfinished run")
    resume.add_argument("run_id", type=int)
    runs = commands.add_parser("runs", help="list the runs in the store")
    runs.add_argument("--experiment", default=None)
    grid = commands.add_parser("sweep", help="run an experiment on every grid point times every seed")
    grid.add_argument("name")
    grid.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE")
    grid.add_argument("--grid", dest="grid", action="append", default=[], metavar="KEY=V1,V2,...")
    grid.add_argument("--seeds", default=None, metavar="S1,S2,...", help="seeds (default: the config's seed)")
    grid.add_argument("--workers", default=None, metavar="N", help="local processes (default: one per core, <= 8)")
    grid.add_argument(
        "--scheduler", default=None, metavar="ADDRESS", help="a Dask scheduler (tcp://host:8786), or 'local'"
    )
    for sub in (run, resume, runs, grid):
        sub.add_argument("--store", default=None, help="run store path (default: $LAB_STORE or runs/lab.sqlite)")
    for sub in (run, resume, grid):
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _key_and_value(assignment: str, form: str) -> tuple[str, str]:
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(assignment, f"expected {form}")
    return key.strip(), value


def _integers(field: str, text: str | None) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; None -> []."""
    if text is None:
        return []
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        raise ConfigError(field, f"expected comma-separated integers, got {text!r}") from None


def sweep_grid(assignments: list[str], grid: list[str], seeds: str | None) -> tuple[dict[str, list[str]], list[int]]:
    """The grid of ``lab.sweep`` from ``--set KEY=VALUE`` (one value), ``--grid KEY=V1,V2,...`` and ``--seeds``.

    Values stay strings; :func:`lab.sweeps.expand_grid` types and validates them exactly as ``run`` does.
    """
    values: dict[str, list[str]] = {}

    def add(key: str, items: list[str]) -> None:
        if key in values:
            raise ConfigError(key, "given more than once across --set and --grid")
        values[key] = items

    for assignment in assignments:
        key, value = _key_and_value(assignment, "key=value")
        add(key, [value])
    for assignment in grid:
        key, text = _key_and_value(assignment, "key=v1,v2,...")
        add(key, text.split(","))
    seed_list = _integers("seeds", seeds)
    if seed_list and "seed" in values:
        raise ConfigError("seed", "give seeds with --seeds or with --set/--grid seed=..., not both")
    return values, seed_list


def _report(store: RunStore, run_id: int) -> str:
    info = store.run_info(run_id)
    message = f": {info['message']}" if info["message"] else ""
    return f"run {run_id} ({info['experiment']}) {info['status']}{message} [store {store.path}]"


def _fail(exc: Exception) -> int:
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point; bad input prints one ``error: field: problem`` line and returns 2 before any run starts."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            for name in registry.names():
                experiment = registry.get(name)
                print(f"{name:24s} {experiment.kind:7s} {experiment.description}")
            return 0
        if args.command == "describe":
            for spec in fields(registry.get(args.name).config_cls):
                limits = spec.describe_range() or (f"one of {list(spec.choices)}" if spec.choices else "")
                print(f"{spec.name:16s} {spec.type.__name__:6s} default {spec.default!r:10s} {limits:24s} {spec.help}")
            return 0
        store = RunStore(args.store)
        if args.command == "sweep":
            return _sweep(args, store)
        if args.command == "runs":
            frame = store.runs(experiment=args.experiment)
            columns = ["id", "experiment", "kind", "status", "started", "finished", "message"]
            print(frame[columns].to_string(index=False) if len(frame) else f"no runs in {store.path}")
            return 0
        if args.command == "run":
            experiment = registry.get(args.name)
            cfg, run = experiment.start(parse_assignments(experiment.config_cls, args.assignments), store=store)
        else:
            experiment = registry.get(store.run_info(args.run_id)["experiment"])
            cfg, run = experiment.reopen(args.run_id, store=store)
    except (ValueError, KeyError, TypeError) as exc:
        return _fail(exc)
    progress = _TqdmProgress(experiment.name, not args.quiet)
    try:
        run_id = experiment.complete(cfg, run, progress)
    finally:
        progress.close()
    print(_report(store, run_id))
    return 0 if store.run_info(run_id)["status"] == "finished" else 1


def _sweep(args: argparse.Namespace, store: RunStore) -> int:
    """``sweep``: validate every config, open the executor, run, print one line per run; 0 when all finished."""
    experiment = registry.get(args.name)
    grid, seeds = sweep_grid(args.assignments, args.grid, args.seeds)
    expand_grid(experiment.config_cls, grid, seeds)  # every config is checked before an executor starts
    workers = _integers("workers", args.workers)[0] if args.workers is not None else None
    with open_executor(args.scheduler, workers) as executor:
        run_ids = sweep(args.name, grid, seeds, executor=executor, store=store, progress=not args.quiet)
    print(_sweep_summary(store, run_ids, [key for key, values in grid.items() if len(values) > 1]))
    print(f"[store {store.path}]")
    statuses = {store.run_info(run_id)["status"] for run_id in run_ids}
    return 0 if statuses == {"finished"} else 1


def _sweep_summary(store: RunStore, run_ids: list[int], varied: list[str]) -> str:
    """One row per run: id, the grid point (the values that vary), seed, status, and the message when there is one."""
    rows = []
    for run_id in run_ids:
        info = store.run_info(run_id)
        point = ", ".join(f"{key}={info['config'][key]}" for key in varied)
        seed = info["config"].get("seed", "")
        rows.append({"id": run_id, "point": point, "seed": seed, "status": info["status"], "message": info["message"]})
    table = pd.DataFrame(rows)
    blank = [column for column in ("point", "message") if not table[column].astype(bool).any()]
    return table.drop(columns=blank).to_string(index=False)


if __name__ == "__main__":
    sys.exit(main())
