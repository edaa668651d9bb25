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
