"""The sgn-lq experiment: logged margins against the closed forms, measured against certified contraction."""

import numpy as np
import pytest

from lab import get


def test_sgn_lq_logs_closed_forms_and_honest_contraction(store):
    experiment = get("sgn-lq")
    cfg = experiment.config(dim=16, n_couplings=8, max_coupling=2.1, n_seeds=6, euler_steps=80)
    run_id = experiment.run(cfg, store=store)
    wide = store.metrics(run_id).pivot(index="step", columns="name", values="value")
    coupling = wide["lq.coupling"].to_numpy()
    np.testing.assert_allclose(coupling, np.linspace(0, 2.1, 8))
    np.testing.assert_allclose(wide["lq.margin_sgn"], 1 - coupling * np.sqrt(0.5), atol=1e-9)
    np.testing.assert_allclose(wide["lq.margin_euclidean"], 1 - coupling * 10.05 / 2, atol=1e-9)
    certified = wide["lq.margin_sgn"] > 0
    assert certified.sum() == 5  # lam < 1/sqrt(ab) = 1.414: couplings 0, 0.3, ..., 1.2
    measured, bound = wide.loc[certified, "lq.measured_factor"], wide.loc[certified, "lq.certified_factor"]
    assert np.all(measured <= bound + 1e-12) and np.all(bound < 1)
    assert wide.loc[~certified, "lq.measured_factor"].isna().all()
    assert np.all(wide["ensemble.rate_sgn"] >= wide["ensemble.rate_euclidean"])
    assert wide["ensemble.rate_sgn"].iloc[0] == 1.0 and wide["ensemble.rate_sgn"].iloc[-1] == 0.0


def test_sgn_lq_rejects_an_odd_dimension():
    with pytest.raises(ValueError, match="dim: expected an even number"):
        get("sgn-lq").config(dim=7)
