"""The experiment registry: every experiment the CLI, the panels and the sweeps can run.

An experiment is a config dataclass plus a body ``body(cfg, run, progress)`` that logs
metrics to ``run`` and reports ``progress(done, total)``. :meth:`Experiment.run` owns
the bookkeeping: it validates the config, records the run in the store, and marks it
``finished``, ``stopped`` (progress asked to stop), ``failed`` or ``interrupted``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.config import as_dict, make_config
from lab.runs import KINDS, Run, RunLogger, RunStore

Progress = Callable[[int, int], bool | None]
"""``progress(done, total)``; a True return asks the experiment to stop (as a solver callback does)."""


class StopRequested(Exception):
    """Raised inside a body when its progress callback asked to stop; the run is marked ``stopped``."""


@dataclass(frozen=True)
class Series:
    """One line of an experiment's live plot: metric ``y`` against metric ``x``, matched by step."""

    x: str
    y: str
    label: str
    mode: str = "lines"


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its config dataclass, its body, and how panels plot its metrics."""

    name: str
    kind: str
    config_cls: type
    body: Callable[[Any, RunLogger, Callable[[int, int], None]], None]  # body(cfg, run, progress)
    description: str
    series: tuple[Series, ...] = ()
    axis_titles: tuple[str, str] = ("", "")
    resumable: bool = False
    log_y: bool = False

    def config(self, **values: Any) -> Any:
        """A validated config: the defaults overridden by ``values``."""
        return make_config(self.config_cls, values)

    def _checked(self, cfg: Any) -> Any:
        if cfg is None:
            return self.config()
        if not isinstance(cfg, self.config_cls):
            raise TypeError(f"cfg: expected a {self.config_cls.__name__}, got {type(cfg).__name__}")
        return make_config(self.config_cls, as_dict(cfg))  # re-validates a config built by hand

    def execute(self, cfg: Any, run: RunLogger, progress: Progress | None = None) -> None:
        """Run the body against any logger; StopRequested propagates when progress asks to stop."""

        def report(done: int, total: int) -> None:
            if progress is not None and progress(done, total):
                raise StopRequested(f"stopped at {done}/{total}")

        self.body(cfg, run, report)

    def start(self, cfg: Any = None, *, store: RunStore) -> tuple[Any, Run]:
        """Validate ``cfg`` (defaults when None) and record a new run; nothing is computed yet."""
        cfg = self._checked(cfg)
        return cfg, store.start(self.name, self.kind, as_dict(cfg))

    def reopen(self, run_id: int, *, store: RunStore) -> tuple[Any, Run]:
        """Reopen an unfinished run of this experiment with its stored config."""
        info = store.run_info(run_id)
        if info["experiment"] != self.name:
            raise ValueError(f"run_id: run {run_id} belongs to {info['experiment']!r}, not {self.name!r}")
        if not self.resumable:
            raise ValueError(f"run_id: experiment {self.name!r} cannot resume runs; start a new one")
        cfg = make_config(self.config_cls, info["config"])
        return cfg, store.resume(run_id)

    def complete(self, cfg: Any, run: Run, progress: Progress | None = None) -> int:
        """Execute the body on a started or reopened run and record how it ended; returns the run id."""
        with run:
            try:
                self.execute(cfg, run, progress)
            except StopRequested as stop:
                run.finish("stopped", str(stop))
        return run.id

    def run(self, cfg: Any = None, *, store: RunStore | None = None, progress: Progress | None = None) -> int:
        """Run the experiment with ``cfg`` (defaults when None), recorded in ``store``; returns the run id."""
        cfg, run = self.start(cfg, store=store if store is not None else RunStore())
        return self.complete(cfg, run, progress)

    def resume(self, run_id: int, *, store: RunStore | None = None, progress: Progress | None = None) -> int:
        """Continue an unfinished run; the body skips the steps it already logged."""
        cfg, run = self.reopen(run_id, store=store if store is not None else RunStore())
        return self.complete(cfg, run, progress)


_REGISTRY: dict[str, Experiment] = {}


def register(
    name: str,
    *,
    kind: str,
    config: type,
    description: str,
    series: tuple[Series, ...] = (),
    axis_titles: tuple[str, str] = ("", ""),
    resumable: bool = False,
    log_y: bool = False,
) -> Callable:
    """Decorator registering ``body`` as experiment ``name``."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")

    def decorate(body: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"name: experiment {name!r} is already registered")
        _REGISTRY[name] = Experiment(name, kind, config, body, description, series, axis_titles, resumable, log_y)
        return body

    return decorate


def _load_builtin() -> None:
    importlib.import_module("lab.experiments")


def get(name: str) -> Experiment:
    """The experiment registered as ``name``; ValueError listing the known names otherwise."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"name: no experiment {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)
