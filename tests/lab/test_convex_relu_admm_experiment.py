"""convex-relu: ADMM reaches cvxpy's optimum with a certified gap, and the panel series are logged."""

import pytest

from lab import get


@pytest.mark.parametrize(
    "values", [{"dataset": "breast_cancer", "n_gates": 20}, {"dataset": "planted_relu", "n": 100, "beta": 0.1}]
)
def test_admm_run_matches_cvxpy_and_is_certified(store, values):
    experiment = get("convex-relu")
    cfg = experiment.config(**values, log_every=5)
    run_id = experiment.run(cfg, store=store)
    wide = store.metrics(run_id).pivot(index="step", columns="name", values="value")
    final = wide.iloc[-1]
    assert final["final.converged"] == 1.0
    assert abs(final["final.objective_gap"]) <= 1e-4  # against cvxpy + Clarabel on the same program
    assert final["final.relative_gap"] <= 1e-4 and final["final.relative_violation"] <= 1e-5
    assert abs(final["final.network_objective"] - final["final.objective"]) <= 1e-6 * final["final.objective"]
    assert final["final.pattern_mismatches"] == 0
    assert wide["primal_residual"].notna().sum() >= 2 and wide["iteration"].dropna().is_monotonic_increasing
