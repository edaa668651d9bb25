"""Command line: ``python -m lab list | describe NAME | run NAME --set k=v ... | resume ID | runs``."""

from __future__ import annotations

import argparse
import sys

from lab import registry
from lab.config import fields, parse_assignments
from lab.runs import RunStore


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
    for sub in (run, resume, runs):
        sub.add_argument("--store", default=None, help="run store path (default: $LAB_STORE or runs/lab.sqlite)")
    for sub in (run, resume):
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


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


if __name__ == "__main__":
    sys.exit(main())
