"""nash-learning: the logged KL stays under Nash-MP's certified bound and under every certificate, pi* is the
ground truth's, Nash-MD's constant step stalls, approximate Nash-MP counts prox steps, and a stopped run resumes."""

import numpy as np
import pytest

from lab import ConfigError, get
from lab.experiments.nash_learning import load_results
from theory.games import (
    PreferenceGame,
    dirichlet_reference,
    kl,
    low_rank_game,
    random_game,
    solve_equilibrium,
    zipf_reference,
)

TIGHT = dict(nash_md_decaying=False, extragradient=False)


def wide(store, run_id):
    return store.metrics(run_id).pivot(index="step", columns="name", values="value")


def test_kl_under_the_nash_mp_bound_and_every_certificate_and_pi_star_is_the_ground_truth(store):
    experiment = get("nash-learning")
    cfg = experiment.config(n_actions=12, beta=0.2, max_queries=300, **TIGHT)
    run_id = experiment.run(cfg, store=store)
    assert store.run_info(run_id)["status"] == "finished"
    results = load_results(store.metrics(run_id))
    # the same game built by hand: the experiment draws mu from the stream [seed, 1] and P from seed
    game = random_game(12, 0.2, reference=dirichlet_reference(12, seed=np.random.default_rng([0, 1])), seed=0)
    star = solve_equilibrium(game)
    np.testing.assert_allclose(results.policies["star"], star.policy, rtol=1e-12, atol=0)
    np.testing.assert_allclose(results.policies["reference"], game.reference, rtol=1e-15, atol=0)
    initial = kl(star.log_policy, np.log(game.reference))
    assert results.initial_kl == pytest.approx(initial, rel=1e-12)

    nash_mp = results.curves["nash_mp"]
    np.testing.assert_array_equal(nash_mp["queries"], 2 * nash_mp["iteration"])
    np.testing.assert_allclose(nash_mp["bound"], initial * 1.4 ** (-nash_mp["queries"] / 2), rtol=1e-12)
    measurable = nash_mp["kl"] > 1e-24
    assert np.all(nash_mp["kl"][measurable] <= nash_mp["bound"][measurable] * (1 + 1e-9))
    assert nash_mp["kl"][0] == pytest.approx(initial, rel=1e-12) and nash_mp["kl"][-1] <= cfg.tol
    assert set(results.curves) == {"nash_mp", "nash_md", "mmd", "optimistic"}
    for name, curve in results.curves.items():
        assert np.all(curve["certificate"] >= curve["kl"]), name
        assert np.all(curve["exploitability"] >= 0) and np.all(np.diff(curve["seconds"]) >= 0), name
        np.testing.assert_allclose(results.policies[name].sum(), 1.0, atol=1e-12)
    optimistic = results.curves["optimistic"]  # one query per iteration, plus P pi_0 for its first leading step
    np.testing.assert_array_equal(optimistic["queries"][1:], optimistic["iteration"][1:] + 1)

    final = wide(store, run_id)
    assert final["nash_mp.converged"].dropna().item() == 1.0
    # Nash-MD at eta' beta = 1/2 stalls at its biased fixed point, far above what Nash-MP certifies
    assert final["nash_md.converged"].dropna().item() == 0.0
    assert results.curves["nash_md"]["queries"][-1] == 300 and results.curves["nash_md"]["kl"][-1] > 1e-4
    stall = results.curves["nash_md"]["kl"]
    assert abs(stall[-1] - stall[-50]) < 1e-6 * stall[-1]


def test_low_rank_pi_star_is_the_dense_newton_solution_and_float32_runs_reach_its_floor(store):
    experiment = get("nash-learning")
    cfg = experiment.config(
        family="low_rank", n_actions=40, rank=2, reference="zipf", float32=True, max_queries=200, log_every=5,
        nash_md=False, nash_md_decaying=False, mmd=False, optimistic=False,
    )  # fmt: skip
    results = load_results(store.metrics(experiment.run(cfg, store=store)))
    game = low_rank_game(40, 2, 0.1, reference=zipf_reference(40), seed=0)
    dense = solve_equilibrium(PreferenceGame(game.dense_preference(), game.reference, game.beta))
    assert dense.residual_span < 1e-12
    np.testing.assert_allclose(results.policies["star"], dense.policy, rtol=1e-12, atol=0)
    for name in ("nash_mp", "extragradient"):
        curve = results.curves[name]
        assert curve["iteration"][1] == 5 and curve["kl"][-1] < 1e-9, name  # near the float32 floor
        assert np.all(curve["certificate"] >= curve["kl"]), name


def test_approximate_nash_mp_counts_prox_steps_as_queries_and_logs_its_duels(store):
    experiment = get("nash-learning")
    cfg = experiment.config(
        n_actions=8, n_samples=50, inner_steps=2, max_queries=20, approx_nash_mp=True,
        nash_mp=False, nash_md=False, nash_md_decaying=False, mmd=False, extragradient=False, optimistic=False,
    )  # fmt: skip
    curve = load_results(store.metrics(experiment.run(cfg, store=store))).curves["approx_nash_mp"]
    np.testing.assert_array_equal(curve["iteration"], np.arange(11))
    np.testing.assert_array_equal(curve["queries"], 2 * curve["iteration"])
    np.testing.assert_array_equal(curve["duels"], curve["iteration"] * 2 * 2 * 50)  # prox x gradient steps x duels
    assert 1e-6 < curve["kl"][-1] < curve["kl"][0]  # noisy gradients: progress, down to a noise floor


def test_a_stopped_run_resumes_with_the_methods_it_had_not_finished(store):
    experiment = get("nash-learning")
    cfg = experiment.config(n_actions=10, max_queries=400, nash_md=False, nash_md_decaying=False)
    reference = wide(store, experiment.run(cfg, store=store))
    # stop once the first method (nash_mp) has used its budget: the progress report after it asks to stop
    run_id = experiment.run(cfg, store=store, progress=lambda done, total: done >= 400)
    assert store.run_info(run_id)["status"] == "stopped"
    assert "mmd.kl" not in wide(store, run_id)
    experiment.resume(run_id, store=store)
    assert store.run_info(run_id)["status"] == "finished"
    resumed = wide(store, run_id)
    values = [name for name in reference if not name.endswith(".seconds") and name != "star.seconds"]
    np.testing.assert_array_equal(resumed[values].to_numpy(), reference[values].to_numpy())


@pytest.mark.parametrize(
    "values, field",
    [
        ({name: False for name in ("nash_mp", "nash_md", "nash_md_decaying", "mmd", "extragradient", "optimistic")},
         "nash_mp"),
        ({"family": "cyclic", "n_actions": 2}, "n_actions"),
        ({"family": "random", "n_actions": 6000}, "n_actions"),
        ({"beta": 0.0}, "beta"),
        ({"family": "tournament"}, "family"),
        ({"nash_md_mixing": 1.5}, "nash_md_mixing"),
    ],
)  # fmt: skip
def test_bad_configs_raise_naming_the_field(values, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as error:
        get("nash-learning").config(**values)
    assert error.value.field == field
