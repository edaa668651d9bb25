"""Conventions every iterative solver in `theory` follows (anchor: ``scipy.optimize``).

1. A solver is a small class stepped by its caller: ``step()`` performs one iteration
   and returns that iteration's scalar metrics (objective, residuals, gap, ...);
   ``converged`` says whether the stopping test holds; accessors read the iterate.
2. A plain ``solve_*`` function wraps the loop with :func:`iterate`, which records
   every metric per iteration (plus wall-clock ``seconds``), calls ``callback`` and
   stops when it returns True, and shows a progress bar on request.
3. The function returns a frozen dataclass derived from :class:`SolverResult`: the
   solution fields plus ``converged``, ``n_iter``, ``message`` and ``history``.
   Failure to converge is data (``converged=False`` and a reason), never an exception.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True, kw_only=True)
class SolverResult:
    """Fields shared by every solver result; subclasses add the solution.

    ``history`` maps a metric name to a 1-D numpy array with one entry per iteration.
    """

    converged: bool
    n_iter: int
    message: str
    history: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class IterationState:
    """What a callback sees after iteration ``n_iter``: its metrics and the solver (for its accessors)."""

    n_iter: int
    metrics: Mapping[str, float]
    solver: Any


Callback = Callable[[IterationState], bool | None]
"""Called after an iteration; returning True (or raising StopIteration) stops the solver cleanly."""


class SteppedSolver(Protocol):
    def step(self) -> Mapping[str, float]: ...

    @property
    def converged(self) -> bool: ...


class History:
    """Per-iteration scalars, collected row by row and returned as 1-D float arrays."""

    def __init__(self) -> None:
        self._columns: dict[str, list[float]] = {}
        self._length = 0

    def append(self, **values: float) -> None:
        for name, value in values.items():
            # A metric first seen late is padded with NaN so every column keeps one entry per row.
            self._columns.setdefault(name, [np.nan] * self._length).append(float(value))
        self._length += 1
        for column in self._columns.values():
            if len(column) < self._length:
                column.append(np.nan)

    def __len__(self) -> int:
        return self._length

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(column, dtype=float) for name, column in self._columns.items()}


@dataclass(frozen=True)
class LoopOutcome:
    """How :func:`iterate` ended; ``fields()`` feeds a :class:`SolverResult` subclass."""

    converged: bool
    n_iter: int
    message: str
    history: dict[str, np.ndarray]

    def fields(self) -> dict[str, Any]:
        return {"converged": self.converged, "n_iter": self.n_iter, "message": self.message, "history": self.history}


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name}: expected a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value}")
    return int(value)


def iterate(
    solver: SteppedSolver,
    *,
    max_iter: int,
    callback: Callback | None = None,
    callback_every: int = 1,
    progress: bool = False,
) -> LoopOutcome:
    """Step ``solver`` until it converges, the callback asks to stop, or ``max_iter`` is reached.

    The callback is called every ``callback_every`` iterations and always on the final one.
    A converged solver is reported converged even if the callback asked to stop at that step.
    """
    max_iter = _positive_int(max_iter, "max_iter")
    callback_every = _positive_int(callback_every, "callback_every")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable taking an IterationState, got {callback!r}")
    history = History()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iter, desc=type(solver).__name__, leave=False)
    start = time.perf_counter()
    try:
        for k in range(1, max_iter + 1):
            metrics = solver.step()
            history.append(**metrics, seconds=time.perf_counter() - start)
            if bar is not None:
                bar.update()
            converged = bool(solver.converged)
            stop = False
            if callback is not None and (k % callback_every == 0 or converged or k == max_iter):
                try:
                    stop = bool(callback(IterationState(k, dict(metrics), solver)))
                except StopIteration:
                    stop = True
            if converged:
                return LoopOutcome(True, k, f"converged after {k} iterations", history.arrays())
            if stop:
                return LoopOutcome(False, k, f"stopped by callback after {k} iterations", history.arrays())
        return LoopOutcome(False, max_iter, f"not converged after max_iter={max_iter} iterations", history.arrays())
    finally:
        if bar is not None:
            bar.close()
