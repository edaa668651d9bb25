"""Checkpoint files shared by pretraining, the RLVR trainer and Nash learning on the LM.

1. :func:`write_atomically`: ``torch.save`` to a temporary file beside the target, then ``os.replace``, so a run
   killed while saving leaves the previous checkpoint whole.
2. :func:`check_same_run`: a checkpoint found at a run's path must have the expected format and the same
   identifying fields (task, vocabulary, model config, the config fields that shape the trajectory); otherwise the
   run would silently continue someone else's. The error names the path and says what to do.
3. :func:`cpu_state`: a module's parameters, detached and on the CPU, for the payload.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().cpu() for name, value in module.state_dict().items()}


def write_atomically(payload: Mapping, path: str | os.PathLike) -> Path:
    """Item 1; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp{os.getpid()}")
    torch.save(dict(payload), temporary)
    os.replace(temporary, path)
    return path


def check_same_run(
    checkpoint,
    path: Path,
    *,
    checkpoint_format: str,
    expected: Mapping,
    normalise_config: Callable[[Mapping], Mapping] | None = None,
) -> None:
    """Item 2: ValueError naming ``checkpoint_path`` unless ``checkpoint`` is a ``checkpoint_format`` payload whose
    ``expected`` keys hold the expected values (its ``config`` passed through ``normalise_config`` first, when
    given: the fields a resumed run may change are dropped on both sides)."""
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != checkpoint_format:
        raise ValueError(f"checkpoint_path: {path} is not a {checkpoint_format} checkpoint")
    found = {key: checkpoint.get(key) for key in expected}
    if normalise_config is not None and "config" in found:
        found["config"] = normalise_config(found["config"] or {})
    if found != dict(expected):
        raise ValueError(
            f"checkpoint_path: {path} holds another run ({found}); expected {dict(expected)}. "
            "Use another path to start a new run."
        )
