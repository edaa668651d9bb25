"""Small helpers shared by the lab's torch code: a thread-count context and argument checks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` torch intra-op threads (None: leave as is), restoring the previous count afterwards.

    The lab's torch problems are tiny (n ~ 100, d ~ 3, or a sub-million-parameter GPT): on a loaded 2-core machine
    one thread ran PGD 40x faster than two.
    """
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(positive_int(count, "num_threads"))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def positive_int(value, name: str) -> int:
    """``value`` as an int, or ValueError naming ``name`` unless it is an integer >= 1 (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)
