"""Shared fixtures; the ``gpu`` marker skips itself where no CUDA device is usable."""

from __future__ import annotations

import pytest

from theory.backend import gpu_available


def pytest_collection_modifyitems(config, items):
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (cupy + GPU); none here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def store(tmp_path):
    from lab.runs import RunStore

    return RunStore(tmp_path / "runs" / "lab.sqlite")


@pytest.fixture
def record_gradients():
    """``record_gradients(optimizer, module)`` -> a list to which each ``optimizer.step()`` first appends a copy of
    ``module``'s parameter gradients (the update it is about to apply)."""

    def install(optimizer, module) -> list:
        updates = []
        apply = optimizer.step

        def step(*args, **kwargs):
            updates.append([parameter.grad.clone() for parameter in module.parameters()])
            return apply(*args, **kwargs)

        optimizer.step = step
        return updates

    return install
