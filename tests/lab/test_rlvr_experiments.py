"""The rlvr-pretrain / rlvr-train / rlvr-eval experiments through the run store: a stopped run resumes from its
checkpoint and ends with the metrics of an uninterrupted one, evaluation logs the quantities its report holds,
runs refer to each other by ``run:ID``, and bad configs name their field."""

import numpy as np
import pytest

from lab import get
from lab.config import ConfigError
from lab.experiments.rlvr import parse_hyperparameters
from lab.rlvr.trainer import TIMING_METRICS
from lab.torch_utils import torch_threads

TINY_BASE = {"base_layers": 2, "base_heads": 2, "base_width": 32, "base_steps": 200}
"""A cached base pretrained in ~3 s on one thread: pass@1 about 0.1-0.2, enough for mixed groups."""
TIMING = {*TIMING_METRICS, "eval/seconds"}


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def wide(store, run_id):
    frame = store.metrics(run_id)
    frame = frame[~frame["name"].isin(TIMING)]
    return frame.pivot(index="step", columns="name", values="value")


def stop_at(step):
    return lambda done, total: done >= step


def test_a_stopped_training_run_resumes_and_ends_with_the_uninterrupted_metrics(store):
    experiment = get("rlvr-train")
    cfg = experiment.config(
        **TINY_BASE, steps=6, prompts_per_step=4, group_size=4, lr=1e-3, eval_every=3, eval_prompts=8,
        eval_samples=4, checkpoint_every=4,
    )  # fmt: skip
    uninterrupted = wide(store, experiment.run(cfg, store=store))
    stopped_id = experiment.run(cfg, store=store, progress=stop_at(2))
    info = store.run_info(stopped_id)
    assert info["status"] == "stopped" and "resume continues" in info["message"]
    assert (store.artifact_dir(stopped_id) / "policy.pt").is_file()  # saved when stopped, before its checkpoint_every
    assert wide(store, stopped_id).index.max() == 2
    assert experiment.resume(stopped_id, store=store) == stopped_id
    assert store.run_info(stopped_id)["status"] == "finished"
    resumed = wide(store, stopped_id)
    assert sorted(resumed.columns) == sorted(uninterrupted.columns)
    np.testing.assert_array_equal(resumed.to_numpy(), uninterrupted[resumed.columns].to_numpy())
    # the held-out evaluation at steps 0, 3, 6 and the shared metric names are there
    assert resumed["eval/pass@1"].dropna().index.tolist() == [0, 3, 6]
    assert {"reward", "kl_to_ref", "entropy", "eval/pass@4", "eval/kl_to_ref"} <= set(resumed.columns)
    assert resumed.loc[1, "kl_to_ref"] == pytest.approx(0.0, abs=1e-6)  # the first update starts at the base
    assert resumed.loc[6, "kl_to_ref"] > 0 and store.run_info(stopped_id)["kind"] == "llm"


def test_evaluation_of_the_base_and_of_a_trained_run(store):
    train = get("rlvr-train")
    trained = train.run(
        train.config(**TINY_BASE, steps=4, prompts_per_step=4, group_size=4, lr=1e-3, eval_every=0), store=store
    )
    evaluate = get("rlvr-eval")
    rows = {}
    for policy in ("base", f"run:{trained}"):
        cfg = evaluate.config(**TINY_BASE, policy=policy, n_prompts=24, n_samples=8, n_boot=50)
        rows[policy] = wide(store, evaluate.run(cfg, store=store)).loc[0]
    base, policy = rows["base"], rows[f"run:{trained}"]
    assert base["kl_to_ref"] == 0.0 and policy["kl_to_ref"] != 0.0
    for row in (base, policy):
        curve = [row[f"pass@{k}"] for k in (1, 2, 4, 8)]
        assert all(a <= b + 1e-12 for a, b in zip(curve, curve[1:], strict=False))  # pass@k rises with k
        for k in (1, 2, 4, 8):
            assert row[f"pass@{k}.low"] <= row[f"pass@{k}"] <= row[f"pass@{k}.high"]
            share = row["minority_fraction"]
            split = share * row[f"minority/pass@{k}"] + (1 - share) * row[f"majority/pass@{k}"]
            assert split == pytest.approx(row[f"pass@{k}"], abs=1e-12)
        assert row["n_prompts"] == 24 and row["n_samples"] == 8
    # the same held-out prompts and sampling seed: the base run's pass@1 equals the training run's step-0 evaluation
    first = wide(store, train.run(train.config(**TINY_BASE, steps=1, eval_every=1, eval_prompts=24, eval_samples=8),
                                  store=store))  # fmt: skip
    assert first.loc[0, "eval/pass@1"] == pytest.approx(base["pass@1"], abs=1e-12)


def test_a_stopped_pretraining_run_resumes_to_the_same_losses_and_can_be_a_base(store):
    experiment = get("rlvr-pretrain")
    cfg = experiment.config(
        n_layer=1, n_head=2, n_embd=16, steps=30, batch_size=16, warmup_steps=5, eval_every=15, eval_prompts=8,
        eval_samples=2, checkpoint_every=10,
    )  # fmt: skip
    uninterrupted = wide(store, experiment.run(cfg, store=store))
    stopped_id = experiment.run(cfg, store=store, progress=stop_at(12))
    assert store.run_info(stopped_id)["status"] == "stopped"
    experiment.resume(stopped_id, store=store)
    resumed = wide(store, stopped_id)
    np.testing.assert_array_equal(resumed.to_numpy(), uninterrupted[resumed.columns].to_numpy())
    assert resumed["loss"].iloc[-1] < resumed["loss"].iloc[0]
    evaluate = get("rlvr-eval")
    row = wide(store, evaluate.run(evaluate.config(base=f"run:{stopped_id}", n_prompts=4, n_samples=2), store=store))
    assert row.loc[0, "pass@1"] == pytest.approx(resumed.loc[30, "eval/pass@1"], abs=1e-12)  # same prompts, seed


def test_parse_hyperparameters():
    assert parse_hyperparameters("") == {}
    assert parse_hyperparameters(" beta=0.04, whiten=false , max_length=6") == {
        "beta": 0.04, "whiten": False, "max_length": 6,
    }  # fmt: skip
    with pytest.raises(ConfigError, match="^hyperparameters: expected 'name=value"):
        parse_hyperparameters("beta")
    with pytest.raises(ConfigError, match="^hyperparameters: beta: expected a number"):
        parse_hyperparameters("beta=high")


def test_config_errors_name_the_field(store):
    train, evaluate = get("rlvr-train"), get("rlvr-eval")
    with pytest.raises(ConfigError, match="^hyperparameters: .*grpo takes"):
        train.config(hyperparameters="lam=0.1")
    with pytest.raises(ConfigError, match="^hyperparameters"):
        train.config(hyperparameters="beta=-1")
    with pytest.raises(ConfigError, match="^group_size"):
        train.config(group_size=1)
    with pytest.raises(ConfigError, match="^base: expected 'cached'"):
        train.config(base="/no/such/checkpoint.pt")
    with pytest.raises(ConfigError, match="^max_new_tokens: the cached base fits at most"):
        train.config(max_new_tokens=50)
    with pytest.raises(ConfigError, match="^base_width: expected a multiple of base_heads"):
        train.config(base_width=30, base_heads=4)
    with pytest.raises(ConfigError, match="^policy: expected 'base'"):
        evaluate.config(policy="latest")
    with pytest.raises(ConfigError, match="^n_embd"):
        get("rlvr-pretrain").config(n_embd=30, n_head=4)
    run_id = evaluate.run(evaluate.config(**TINY_BASE, n_prompts=2, n_samples=2), store=store)
    with pytest.raises(ValueError, match="base: run .* is a 'rlvr-eval' run"):
        train.run(train.config(base=f"run:{run_id}", steps=1), store=store)
