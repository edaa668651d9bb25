"""sea-regret: every logged final regret is run_online's on the same loss sequence, the bound scale is the
environment's closed form, the curves average the seeds, and bad grids raise naming the field."""

import numpy as np
import pytest

from lab import ConfigError, get
from lab.experiments.sea_regret import load_results
from theory.games.sea import (
    FollowTheRegularizedLeader,
    OnlineGradientDescent,
    OnlineMirrorDescent,
    OptimisticOMD,
    SEALinearSimplexEnvironment,
    SEAQuadraticEnvironment,
    run_online,
)

LEARNERS = {
    "oomd": OptimisticOMD,
    "omd": OnlineMirrorDescent,
    "ogd": OnlineGradientDescent,
    "ftrl": FollowTheRegularizedLeader,
}


def test_ball_regrets_equal_run_online_on_the_same_seed_and_the_curves_average_the_seeds(store):
    experiment = get("sea-regret")
    cfg = experiment.config(dim=3, horizon=200, noises="0, 1", drifts="0, 0.3", n_seeds=2, seed=5, log_every=50)
    results = load_results(store.metrics(experiment.run(cfg, store=store)))
    points = results.points
    assert len(points) == 4 * 2 and list(points["seed"]) == [5, 6] * 4
    for _, row in points.iterrows():
        environment = SEAQuadraticEnvironment(dim=3, noise=row["noise"], drift=row["drift"], center=np.full(3, 0.2))
        for name, learner in LEARNERS.items():
            learner = learner(environment.domain, gradient_bound=environment.gradient_bound)
            expected = run_online(learner, environment, 200, seed=int(row["seed"]))
            assert row[f"{name}.final_regret"] == expected.final_regret, (row, name)
        assert row["bound_scale"] == expected.bound_scale
        assert row["sigma_sq_total"] == pytest.approx(200 * 3 * row["noise"] ** 2)
    # sigma = 0, drift = 0: Sigma^2 = (R + ||c||)^2 only, so the scale is 1 + 0.2 sqrt(3)
    assert points.loc[0, "bound_scale"] == pytest.approx(1 + 0.2 * np.sqrt(3), rel=1e-12)
    np.testing.assert_array_equal(results.rounds, [50, 100, 150, 200])
    for cell, curves in results.curves.items():
        in_cell = points[points["cell"] == cell]
        for name in LEARNERS:
            assert curves[name][-1] == pytest.approx(in_cell[f"{name}.final_regret"].mean(), rel=1e-12)


def test_simplex_regret_equals_run_online(store):
    experiment = get("sea-regret")
    cfg = experiment.config(domain="simplex", dim=4, horizon=150, noises="0.5", drifts="0.4", period=3, n_seeds=1)
    points = load_results(store.metrics(experiment.run(cfg, store=store))).points
    environment = SEALinearSimplexEnvironment(dim=4, noise=0.5, drift=0.4, period=3)
    result = run_online(OptimisticOMD(environment.domain, gradient_bound=environment.gradient_bound), environment, 150)
    assert points.loc[0, "oomd.final_regret"] == result.final_regret
    # Sigma^2 = ||g_1||_inf^2 + (switches) (2 drift ||e_0 - e_3||_inf)^2, g_1 = linspace(0, 1, 4) + 0.4 (e_0 - e_3)
    assert points.loc[0, "variation_total"] == pytest.approx((2 / 3) ** 2 + (149 // 3) * 0.8**2, rel=1e-12)


@pytest.mark.parametrize(
    "values, field",
    [
        ({"noises": "0, x"}, "noises"),
        ({"drifts": "0.2, -1"}, "drifts"),
        ({"noises": ""}, "noises"),
        ({"horizon": 100, "log_every": 200}, "log_every"),
        ({"domain": "cube"}, "domain"),
    ],
)
def test_bad_configs_raise_naming_the_field(values, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as error:
        get("sea-regret").config(**values)
    assert error.value.field == field
