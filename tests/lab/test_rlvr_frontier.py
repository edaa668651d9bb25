"""rlvr-frontier: the logged frontier is theory.alignment's on the base's sampled answer distributions, its base
point is rlvr-eval's pass@1 on the same draws, best-of-N stays under it, and rlvr-train runs land on its axes."""

import numpy as np
import pytest

from lab import get
from lab.experiments.rlvr import BASE_CACHE
from lab.experiments.rlvr_frontier import answer_distributions, conditioned_base, sample_completions
from lab.rlvr.pretrain import DEFAULT_BASE, cached_base_model, task_config
from lab.rlvr.tasks import CountdownLite
from lab.rlvr_views import frontier_figure, frontier_gaps, load_frontier, training_trajectory
from lab.torch_utils import torch_threads
from theory.alignment import population_best_of_n_curve, population_tilted_curve

TINY_BASE = {"base_layers": 2, "base_heads": 2, "base_width": 32, "base_steps": 300}


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def test_answer_distributions_and_the_conditioned_base_by_hand():
    task = CountdownLite()
    prompt = "1 2 3=05?"  # 2+3*1 = 5, 1*2+3 = 5: several answers are correct
    completions = [["2+3*1", "2+3*1", "1+2+3", "garbage"]]
    ps, rs = answer_distributions(task, [prompt], completions)
    np.testing.assert_array_equal(ps[0], [0.5, 0.25, 0.25])
    np.testing.assert_array_equal(rs[0], [1.0, 0.0, 0.0])
    # prompt 1 solved with probability 0.5 (KL log 2 to condition on success), prompt 2 never: it stays put
    kl, reward = conditioned_base([ps[0], np.array([1.0])], [rs[0], np.array([0.0])])
    assert kl == pytest.approx(np.log(2) / 2) and reward == 0.5


def test_the_logged_frontier_is_theorys_and_its_base_point_is_rlvr_evals(store):
    frontier_run = get("rlvr-frontier")
    cfg = frontier_run.config(**TINY_BASE, n_prompts=24, n_samples=32, n_betas=30, max_n=64)
    frontier = load_frontier(store.metrics(frontier_run.run(cfg, store=store)))
    evaluate = get("rlvr-eval")
    base = evaluate.run(evaluate.config(**TINY_BASE, n_prompts=24, n_samples=32, n_boot=10), store=store)
    base_pass_at_1 = store.metrics(base).set_index("name").loc["pass@1", "value"]
    assert frontier.base_reward == pytest.approx(base_pass_at_1, abs=1e-12)  # the same prompts, seed and chunks
    assert 0.05 < frontier.base_reward < 0.9
    # the curve rises (flat once beta is small enough to condition on success), from the base to the conditioned base
    assert np.all(np.diff(frontier.tilted.kl) >= 0) and np.all(np.diff(frontier.tilted.reward) >= 0)
    assert frontier.tilted.kl[0] < 1e-3 and frontier.tilted.reward[0] == pytest.approx(frontier.base_reward, abs=2e-3)
    assert frontier.tilted.kl[-1] == pytest.approx(frontier.conditioned[0], abs=1e-9)
    assert frontier.tilted.reward[-1] == pytest.approx(frontier.conditioned[1], abs=1e-9)
    assert frontier.best_of_n.parameter.tolist() == [1, 2, 4, 8, 16, 32, 64]
    # best-of-N never above the frontier, in the exact Lagrangian form of theory.alignment's test
    betas = frontier.tilted.parameter
    lagrangian = frontier.tilted.reward - betas * frontier.tilted.kl
    best = frontier.best_of_n.reward[:, None] - betas[None, :] * frontier.best_of_n.kl[:, None]
    assert np.all(best <= lagrangian[None, :] + 1e-12)
    # and the values are theory's on the same population, recomputed with the same betas and N
    ps, rs = population_inputs(store, frontier)
    np.testing.assert_allclose(frontier.tilted.kl, population_tilted_curve(ps, rs, betas).kl, rtol=1e-12)
    best_of_n = population_best_of_n_curve(ps, rs, [1, 2, 4, 8, 16, 32, 64])
    np.testing.assert_allclose(frontier.best_of_n.reward, best_of_n.reward, rtol=1e-12)


def population_inputs(store, frontier):
    """The sampled population of the test above, redrawn from the cached base beside the store."""
    task = CountdownLite()
    config = task_config(task, n_layer=2, n_head=2, n_embd=32)
    cache = store.path.parent / "artifacts" / BASE_CACHE
    base, _ = cached_base_model(task.name, cache, config=config, steps=300, seed=DEFAULT_BASE["seed"])
    prompts = task.sample_prompts(24, 0, "test")
    completions = sample_completions(base, task, prompts, 32, temperature=1.0, seed=0, rows_per_batch=4096)
    return answer_distributions(task, prompts, completions)


def test_training_runs_on_the_frontier_axes(store):
    frontier_run = get("rlvr-frontier")
    frontier = load_frontier(
        store.metrics(frontier_run.run(frontier_run.config(**TINY_BASE, n_prompts=16, n_samples=16), store=store))
    )
    train = get("rlvr-train")
    run_id = train.run(
        train.config(**TINY_BASE, steps=4, prompts_per_step=4, group_size=4, lr=1e-3, eval_every=2, eval_prompts=16,
                     eval_samples=16),
        store=store,
    )  # fmt: skip
    metrics = store.metrics(run_id)
    steps, kl, reward = training_trajectory(metrics)
    assert steps.tolist() == [0, 2, 4] and kl[0] == pytest.approx(0.0, abs=1e-6)
    assert reward[0] == pytest.approx(frontier.base_reward, abs=1e-12)  # step 0 evaluates the base on the same draws
    gaps = frontier_gaps(frontier, {"grpo": metrics})
    row = gaps.iloc[0]
    assert row["step"] == 4 and row["reward"] == reward[-1]
    assert row["gap"] == pytest.approx(row["frontier_reward"] - reward[-1])
    figure = frontier_figure(frontier, {"grpo": metrics})
    traces = {trace.name: trace for trace in figure.data}
    np.testing.assert_array_equal(traces["grpo"].y, reward)
    np.testing.assert_array_equal(traces["frontier φ_β ∝ p·exp(r/β)"].x, frontier.tilted.kl)
