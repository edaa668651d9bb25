"""The alignment-tradeoff experiment end to end: logged values against theory.alignment's closed forms."""

import numpy as np
import pytest

from lab import get
from lab.experiments.alignment_tradeoff import best_of_n_grid, make_instance
from theory import alignment

EXPERIMENT = get("alignment-tradeoff")


def _wide(store, run_id):
    return store.metrics(run_id).pivot(index="step", columns="name", values="value")


@pytest.mark.parametrize("reward", ["gaussian", "binary"])
def test_logged_curves_match_closed_forms(store, reward):
    cfg = EXPERIMENT.config(reward=reward, n_outputs=40, max_n=32, n_betas=12, mc_samples=50_000, seed=3)
    run_id = EXPERIMENT.run(cfg, store=store)
    assert store.run_info(run_id)["status"] == "finished"
    wide = _wide(store, run_id)
    p, r = make_instance(cfg)
    tilted = wide.dropna(subset=["tilted.beta"])
    exact = alignment.tilted_curve(p, r, tilted["tilted.beta"].to_numpy())
    np.testing.assert_allclose(tilted["tilted.reward"], exact.reward, rtol=1e-12)
    np.testing.assert_allclose(tilted["tilted.kl_to_ref"], exact.kl, rtol=1e-10, atol=1e-14)
    bon = wide.dropna(subset=["best_of_n.reward"])
    assert bon.index.tolist() == list(range(1, 33))
    for n in (1, 7, 32):
        q = alignment.best_of_n_distribution(p, r, n)
        assert bon.loc[n, "best_of_n.reward"] == pytest.approx(q @ r, rel=1e-12)
        assert bon.loc[n, "best_of_n.kl_to_ref"] == pytest.approx(alignment.kl_divergence(q, p), abs=1e-12)
    assert np.all(bon["best_of_n.kl_to_ref"] <= np.log(bon.index) - (bon.index - 1) / bon.index + 1e-12)
    gap = (bon["best_of_n.tilted_reward_at_same_kl"] - bon["best_of_n.reward"]).dropna()
    assert gap.min() >= -1e-9  # the tilted optimum dominates best-of-N at equal KL
    if reward == "binary":
        np.testing.assert_allclose(gap, 0.0, atol=1e-7)  # binary reward: best-of-N is itself a tilt
    else:
        assert gap.max() > 1e-3
    # Monte-Carlo from base samples only, within 5 standard errors of the exact values
    z_tilted = (tilted["tilted_mc.reward"] - tilted["tilted.reward"]) / tilted["tilted_mc.reward_stderr"]
    z_bon = (bon["best_of_n_mc.reward"] - bon["best_of_n.reward"]) / bon["best_of_n_mc.reward_stderr"]
    assert np.abs(z_tilted[tilted["tilted_mc.reward_stderr"] > 0]).max() < 5
    assert np.abs(z_bon[bon["best_of_n_mc.reward_stderr"] > 0]).max() < 5


def test_stop_then_resume_gives_the_uninterrupted_result(store):
    cfg = EXPERIMENT.config(max_n=16, n_betas=10, mc_samples=2_000)
    reference = _wide(store, EXPERIMENT.run(cfg, store=store))
    run_id = EXPERIMENT.run(cfg, store=store, progress=lambda done, total: done >= 7)
    info = store.run_info(run_id)
    assert info["status"] == "stopped" and "7/26" in info["message"]
    assert len(_wide(store, run_id)) == 7
    seen = []
    EXPERIMENT.resume(run_id, store=store, progress=lambda done, total: seen.append(done))
    assert store.run_info(run_id)["status"] == "finished" and seen[-1] == 26
    resumed = _wide(store, run_id)
    np.testing.assert_array_equal(resumed.to_numpy(), reference.to_numpy())
    with pytest.raises(ValueError, match="run_id: run .* is finished"):
        EXPERIMENT.resume(run_id, store=store)


def test_config_rules():
    with pytest.raises(ValueError, match="mc_samples: expected 0 or at least 2\\*max_n"):
        EXPERIMENT.config(mc_samples=10, max_n=64)
    with pytest.raises(ValueError, match="p_correct"):
        EXPERIMENT.config(p_correct=1.0)
    with pytest.raises(TypeError, match="cfg: expected a AlignmentTradeoffConfig"):
        EXPERIMENT.run({"max_n": 3})


def test_instances_are_seeded_and_valid():
    cfg = EXPERIMENT.config(reward="binary", base="dirichlet", n_outputs=30, p_correct=0.3, seed=5)
    p, r = make_instance(cfg)
    p2, r2 = make_instance(cfg)
    np.testing.assert_array_equal(p, p2)
    np.testing.assert_array_equal(r, r2)
    assert p.sum() == pytest.approx(1.0) and p[r == 1].sum() == pytest.approx(0.3)
    assert best_of_n_grid(10).tolist() == list(range(1, 11))
    long = best_of_n_grid(4096)
    assert long[0] == 1 and long[-1] == 4096 and len(long) <= 64 and np.all(np.diff(long) > 0)
