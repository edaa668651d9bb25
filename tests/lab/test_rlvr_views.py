"""RLVR views without a browser: pass@k read back from long metrics (numeric k order, the last step, intervals,
groups), log2 axes with bands, the level-0 curves drawn by the same builders, training curves that update in place,
and runs executed side by side with a live figure."""

import numpy as np
import pandas as pd
import pytest

from lab.config import ConfigError
from lab.rlvr_views import (
    BASE_COLOUR,
    LiveTrainingCurves,
    PassAtK,
    breakdown_figure,
    crossover_k,
    eval_breakdown,
    eval_pass_at_k,
    level0_figure,
    level0_pass_at_k,
    level0_steps_figure,
    pass_at_k_figure,
    run_each,
    trailing_mean,
    training_curves_figure,
    update_training_curves,
)
from lab.torch_utils import torch_threads
from theory.rlvr_level0 import compare_methods, minority_type_model

TINY_BASE = {"base_layers": 2, "base_heads": 2, "base_width": 32, "base_steps": 200}


def long_frame(rows):
    return pd.DataFrame(rows, columns=["step", "name", "value"])


def eval_metrics():
    """An rlvr-eval-like run logging at steps 0 and 5; k = 16 sorts before 2 as text."""
    rows = [(0, "pass@1", 0.9), (0, "pass@2", 0.95)]
    for k, value in ((1, 0.2), (2, 0.35), (16, 0.8)):
        rows += [(5, f"pass@{k}", value), (5, f"pass@{k}.low", value - 0.05), (5, f"pass@{k}.high", value + 0.04)]
        rows += [(5, f"minority/pass@{k}", value / 2), (5, f"majority/pass@{k}", value + 0.1)]
        rows += [(5, f"eval/pass@{k}", value / 4)]
    return long_frame(rows + [(5, "pass@1_bogus", 1.0), (5, "support", 3.0)])


def test_eval_pass_at_k_reads_the_last_step_in_numeric_order():
    metrics = eval_metrics()
    curve = eval_pass_at_k(metrics)
    np.testing.assert_array_equal(curve.ks, [1, 2, 16])
    np.testing.assert_allclose(curve.value, [0.2, 0.35, 0.8])
    np.testing.assert_allclose(curve.low, [0.15, 0.30, 0.75])
    np.testing.assert_allclose(curve.high, [0.24, 0.39, 0.84])
    early = eval_pass_at_k(metrics, step=0)
    np.testing.assert_allclose(early.value, [0.9, 0.95])
    assert early.low is None
    minority = eval_pass_at_k(metrics, group="minority")
    np.testing.assert_allclose(minority.value, [0.1, 0.175, 0.4])
    assert minority.low is None
    np.testing.assert_allclose(eval_pass_at_k(metrics, prefix="eval/").value, [0.05, 0.0875, 0.2])
    assert list(eval_breakdown(metrics)) == ["all prompts", "majority", "minority"]
    assert list(eval_breakdown(long_frame([(0, "pass@1", 0.5)]))) == ["all prompts"]
    with pytest.raises(ValueError, match="^metrics: no eval/minority/pass@k"):
        eval_pass_at_k(metrics, group="minority", prefix="eval/")
    with pytest.raises(ValueError, match="^step: no pass@k logged at step 3"):
        eval_pass_at_k(metrics, step=3)


def test_pass_at_k_figures_use_a_log2_axis_with_bands_and_one_colour_per_policy():
    metrics = eval_metrics()
    figure = pass_at_k_figure({"base": eval_pass_at_k(metrics), "grpo": eval_pass_at_k(metrics, step=0)})
    band, base, grpo = figure.data  # the base has an interval, the step-0 curve has none
    assert figure.layout.xaxis.type == "log" and list(figure.layout.xaxis.tickvals) == [1, 2, 16]
    assert band.fill == "toself" and band.mode == "lines" and not band.showlegend
    np.testing.assert_allclose(band.y, [0.24, 0.39, 0.84, 0.75, 0.30, 0.15])  # high out, low back
    assert base.line.color == BASE_COLOUR and base.line.dash == "dash"
    assert grpo.line.color != BASE_COLOUR and grpo.line.dash is None
    split = breakdown_figure({"base": eval_breakdown(metrics), "nsr": eval_breakdown(metrics)})
    lines = [trace for trace in split.data if trace.fill is None]
    assert [trace.name for trace in lines] == ["base"] * 3 + ["nsr"] * 3
    assert [trace.showlegend for trace in lines] == [True, False, False] * 2  # one legend entry per policy
    assert len({trace.line.color for trace in lines if trace.name == "nsr"}) == 1
    with pytest.raises(ValueError, match="^curves: 'nsr' has no 'majority' curve"):
        breakdown_figure({"base": eval_breakdown(metrics), "nsr": {"all prompts": eval_pass_at_k(metrics)}})


def test_the_level0_model_is_drawn_with_the_same_builders():
    runs = compare_methods(minority_type_model(), methods=("psr", "grpo"), ks=[1, 2, 4, 16])
    base, grpo = level0_pass_at_k(runs["grpo"], 0), level0_pass_at_k(runs["grpo"])
    assert list(base) == ["all prompts", "majority", "minority"]
    np.testing.assert_allclose(base["all prompts"].value[0], 0.635)
    np.testing.assert_allclose(base["minority"].value, 1 - 0.875 ** np.array([1, 2, 4, 16]))
    assert crossover_k(base["all prompts"], grpo["all prompts"]) == 4  # pass@1 and @2 rise, @4 falls
    assert crossover_k(base["majority"], grpo["majority"]) is None
    figure = level0_figure(runs)
    assert len(figure.data) == 3 * 3  # base, psr, grpo in three panels, no intervals
    np.testing.assert_allclose(figure.data[0].y, runs["psr"].overall[0])
    steps = level0_steps_figure(runs, k=16)
    np.testing.assert_allclose(steps.data[3].y, runs["grpo"].pass_at_k[:, 1, 3])  # grpo's minority pass@16
    with pytest.raises(ValueError, match="^k: expected one of"):
        level0_steps_figure(runs, k=8)


def test_crossover_k_on_the_shared_ks():
    base = PassAtK(np.array([1, 2, 4, 8]), np.array([0.1, 0.5, 0.8, 0.9]))
    assert crossover_k(base, PassAtK(np.array([1, 4, 8]), np.array([0.2, 0.8, 0.85]))) == 8
    assert crossover_k(base, PassAtK(np.array([2, 4]), np.array([0.4, 0.9]))) == 2


def test_trailing_mean():
    np.testing.assert_allclose(trailing_mean([1.0, 2.0, 3.0, 4.0], 2), [1.0, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(trailing_mean([1.0, 3.0], 5), [1.0, 2.0])
    with pytest.raises(ValueError, match="^window: expected an integer >= 1"):
        trailing_mean([1.0], 0)


def training_frame(scale):
    rows = [(step, "reward", scale * step) for step in range(1, 5)]
    rows += [(step, "kl_to_ref", scale * step / 10) for step in range(1, 5)]
    return long_frame(rows + [(0, "eval/pass@1", scale), (4, "eval/pass@1", 2 * scale), (2, "loss", 9.0)])


def test_training_curves_smooth_the_reward_and_update_in_place():
    figure = training_curves_figure({"grpo": training_frame(1.0), "psr": training_frame(2.0)}, smooth=2)
    assert [trace.name for trace in figure.data] == ["grpo"] * 3 + ["psr"] * 3
    reward, held_out, kl = figure.data[:3]
    np.testing.assert_allclose(reward.y, [1.0, 1.5, 2.5, 3.5])
    assert held_out.mode == "lines+markers" and list(held_out.x) == [0, 4]
    np.testing.assert_allclose(kl.y, [0.1, 0.2, 0.3, 0.4])
    update_training_curves(figure, {"grpo": training_frame(3.0), "psr": long_frame([])}, smooth=1)
    np.testing.assert_allclose(figure.data[0].y, [3.0, 6.0, 9.0, 12.0])
    assert len(figure.data[3].x) == 0
    with pytest.raises(ValueError, match="^metrics_by_label: 3 traces for a figure of 6"):
        update_training_curves(figure, {"grpo": training_frame(1.0)})


def test_runs_side_by_side_with_a_live_figure(store):
    train = dict(TINY_BASE, steps=3, prompts_per_step=4, group_size=4, lr=1e-3, eval_every=3, eval_prompts=8,
                 eval_samples=4)  # fmt: skip
    with pytest.raises(ConfigError):
        run_each("rlvr-train", {"grpo": train, "nsr": dict(train, steps=0)}, store=store)
    assert store.runs().empty  # every config is checked before the first run starts
    live = LiveTrainingCurves(["grpo", "nsr"], min_interval=0.0)
    with torch_threads(1):
        trained = run_each("rlvr-train", {name: dict(train, objective=name) for name in live.metrics()},
                           store=store, live=live)  # fmt: skip
        policies = {"base": "base"} | {name: f"run:{run_id}" for name, run_id in trained.items()}
        evaluated = run_each(
            "rlvr-eval", {name: dict(TINY_BASE, policy=policy, n_prompts=16, n_samples=8, n_boot=20)
                          for name, policy in policies.items()}, store=store,
        )  # fmt: skip
    assert all(store.run_info(run_id)["status"] == "finished" for run_id in [*trained.values(), *evaluated.values()])
    assert live.redraws >= 7  # one per logged step of each run, and the last
    for col, name in enumerate(("reward", "eval/pass@1", "kl_to_ref")):
        for offset, label in enumerate(("grpo", "nsr")):
            logged = store.metrics(trained[label], name)
            np.testing.assert_array_equal(live.figure.data[3 * offset + col].x, logged["step"])
    assert list(live.figure.data[1].x) == [0, 3]
    figure = breakdown_figure({name: eval_breakdown(store.metrics(run_id)) for name, run_id in evaluated.items()})
    assert [trace.name for trace in figure.data if trace.fill is None][::3] == ["base", "grpo", "nsr"]
