"""RL Theory Lab: experiments, the run store, sweeps, widgets and plots (and, later, RLVR).

Quick start::

    import lab
    store = lab.RunStore()                                   # runs/lab.sqlite, or $LAB_STORE
    run_id = lab.get("alignment-tradeoff").run(store=store)
    store.metrics(run_id)                                    # a long pandas DataFrame
"""

from lab.config import ConfigError, make_config
from lab.registry import Experiment, Series, get, names
from lab.runs import Run, RunStore
from lab.sweeps import sweep

__all__ = ["ConfigError", "Experiment", "Run", "RunStore", "Series", "get", "make_config", "names", "sweep"]
