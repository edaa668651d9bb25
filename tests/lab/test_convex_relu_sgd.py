"""convex-relu-sgd: no trained network beats the certified global optimum, and the optimum is certified."""

import numpy as np

from lab import get


def test_trained_networks_never_beat_the_certified_global_optimum(store):
    experiment = get("convex-relu-sgd")
    cfg = experiment.config(n=12, width=20, epochs=300, n_seeds=2, lr=0.02)
    run_id = experiment.run(cfg, store=store)
    assert store.run_info(run_id)["status"] == "finished"
    wide = store.metrics(run_id).pivot(index="step", columns="name", values="value")
    optimum, lower = wide["convex.optimum"].iloc[0], wide["convex.lower_bound"].iloc[0]
    assert lower <= optimum and (optimum - lower) / optimum <= 1e-6  # certified by the dual bound
    assert wide["convex.n_patterns"].dropna().item() == 12**2 - 12 + 1
    curve = wide.dropna(subset=["nonconvex.best"])
    assert np.all(curve["nonconvex.best"] >= lower - 1e-9)  # the convex value over all patterns is global
    assert np.all(curve["nonconvex.best"] <= curve["nonconvex.mean"] + 1e-12)
    assert curve["nonconvex.mean"].iloc[-1] < curve["nonconvex.mean"].iloc[0]  # training does reduce the objective
    assert wide["final.relative_gap_best"].dropna().item() >= -1e-9
