"""Level-0 RLVR against hand-computed values, finite differences, brute force over every group of samples, Monte
Carlo, the unbiasedness of Chen's estimator, and the notes' §3.2 table."""

import itertools
import math

import numpy as np
import pytest

from theory.rlvr_level0 import (
    GRPO_STD_EPS,
    METHODS,
    TwoStrategyModel,
    compare_methods,
    doubling_ks,
    expected_update,
    minority_type_model,
    pass_at_k,
    sample_advantages,
    sampled_update,
    simulate,
    update_scale,
)


def skewed_model(shared=True):
    """Three types with unequal probabilities and features, so no term of a formula vanishes by symmetry."""
    features = np.array([[1.0, 0.3], [1.0, -0.7], [0.5, 1.2]]) if shared else np.eye(3)
    return TwoStrategyModel(
        type_weights=np.array([0.5, 0.3, 0.2]),
        success_a=np.array([0.8, 0.35, 0.1]),
        success_b=np.array([0.3, 0.6, 0.55]),
        features=features,
        theta=np.array([-0.4, 0.9, 0.2])[: features.shape[1]],
        type_names=("a", "b", "c"),
    )


def test_the_base_policy_has_the_notes_pass_at_k():
    model = minority_type_model()
    np.testing.assert_allclose(model.prob_b(), [0.25, 0.25])
    np.testing.assert_allclose(model.success(), [0.75 * 0.9 + 0.25 * 0.2, 0.25 * 0.5])
    base = simulate(model, "psr", steps=1, ks=[1, 4, 16, 64])
    # 0.85 * 0.725 + 0.15 * 0.125 = 0.635; the notes' table: 0.635, 0.907, 0.982, 1.000
    np.testing.assert_allclose(base.overall[0], [0.635, 0.9072, 0.9823, 1.0], atol=5e-4)
    assert base.pass_at_k[0, 1, 2] == pytest.approx(1 - 0.875**16)  # type-2 pass@16 = 0.882


def test_the_objective_gradient_matches_finite_differences():
    model, theta = skewed_model(), np.array([0.3, -1.1])
    step = 1e-6
    numeric = [
        (model.objective(theta + step * e) - model.objective(theta - step * e)) / (2 * step) for e in np.eye(theta.size)
    ]
    np.testing.assert_allclose(model.objective_gradient(theta), numeric, rtol=1e-7)


def test_psr_and_nsr_are_the_gradient_of_pass_at_1_in_expectation():
    """Notes §1.7: E[r grad log pi] = -E[(1 - r) grad log pi] = grad J; W-REINFORCE (1 + lambda) grad J;
    Dr.GRPO's group mean costs a factor (G - 1) / G."""
    model, theta = skewed_model(), np.array([0.3, -1.1])
    gradient = model.objective_gradient(theta)
    np.testing.assert_allclose(expected_update(model, theta, "psr"), gradient, rtol=1e-12)
    np.testing.assert_allclose(expected_update(model, theta, "nsr"), gradient, rtol=1e-12)
    np.testing.assert_allclose(expected_update(model, theta, "w_reinforce", positive_weight=0.1), 1.1 * gradient)
    np.testing.assert_allclose(expected_update(model, theta, "dr_grpo", group_size=5), 0.8 * gradient)


def brute_force_update(model, theta, method, group_size):
    """E[update] by summing over every sequence of G (strategy, verdict) outcomes of each type."""
    pi, total = model.prob_b(theta), np.zeros_like(theta)
    outcomes = [(uses_b, correct) for uses_b in (0, 1) for correct in (0, 1)]
    for t, weight in enumerate(model.type_weights):
        solve = {0: model.success_a[t], 1: model.success_b[t]}
        for group in itertools.product(outcomes, repeat=group_size):
            probability = math.prod((pi[t] if b else 1 - pi[t]) * (solve[b] if r else 1 - solve[b]) for b, r in group)
            rewards = np.array([[r for _, r in group]], dtype=float)
            advantages = sample_advantages(method, rewards)[0]
            score = np.array([b for b, _ in group]) - pi[t]
            total += weight * probability * np.mean(advantages * score) * model.features[t]
    return total


@pytest.mark.parametrize("group_size", [2, 3, 4])
@pytest.mark.parametrize("method", METHODS)
def test_the_closed_form_expectation_equals_brute_force_over_every_group(method, group_size):
    model, theta = skewed_model(), np.array([0.3, -1.1])
    np.testing.assert_allclose(
        expected_update(model, theta, method, group_size=group_size),
        brute_force_update(model, theta, method, group_size),
        rtol=1e-10,
        atol=1e-15,
    )


def test_grpo_on_pairs_scales_the_gradient_by_a_constant():
    """G = 2: a mixed pair has m = 1, sigma_1 = 1/sqrt(2), so c = (1/2) / (1/sqrt(2) + eps) whatever P is."""
    scale = update_scale("grpo", np.array([0.01, 0.3, 0.99]), group_size=2)
    np.testing.assert_allclose(scale, 0.5 / (2**-0.5 + GRPO_STD_EPS))
    # G = 4: c lies between 3/4 * 1/(sigma_2 + eps) (P = 1/2 favours m = 2) and 3/4 * 1/(sigma_1 + eps) (P -> 0, 1)
    np.testing.assert_allclose(update_scale("grpo", np.array([0.0, 1.0]), group_size=4), 0.75 / (0.5 + GRPO_STD_EPS))
    middle = update_scale("grpo", np.array(0.5), group_size=4)
    expected = 0.75 * (0.25 / (0.5 + GRPO_STD_EPS) + 0.5 / (3**-0.5 + GRPO_STD_EPS) + 0.25 / (0.5 + GRPO_STD_EPS))
    assert middle == pytest.approx(expected)


@pytest.mark.parametrize("method", ["nsr", "grpo"])
def test_sampled_batches_average_to_the_expectation(method):
    model, theta = skewed_model(), np.array([0.3, -1.1])
    rng = np.random.default_rng(7)
    draws = np.array([sampled_update(model, theta, method, rng, n_prompts=50, group_size=4) for _ in range(4000)])
    stderr = draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - expected_update(model, theta, method)), 4 * stderr)


def test_pass_at_k_closed_form_against_brute_force_and_chen_estimator():
    success = np.array([0.0, 0.13, 0.5, 0.9, 1.0])
    ks = np.arange(1, 6)

    def at_least_one_hit(p, k):
        draws = itertools.product((0, 1), repeat=k)
        return sum(math.prod(p if hit else 1 - p for hit in draw) for draw in draws if any(draw))

    brute = [[at_least_one_hit(p, k) for k in ks] for p in success]
    np.testing.assert_allclose(pass_at_k(success, ks), brute, atol=1e-15)
    # Chen et al.'s 1 - C(n-c, k)/C(n, k) is unbiased: its mean over c ~ Bin(n, P) is 1 - (1 - P)^k exactly
    n, p = 20, 0.13
    for k in (1, 3, 20):
        mean = sum(
            math.comb(n, c) * p**c * (1 - p) ** (n - c) * (1 - math.comb(n - c, k) / math.comb(n, k))
            for c in range(n + 1)
        )
        assert mean == pytest.approx(pass_at_k(p, [k])[0], rel=1e-12)
    np.testing.assert_array_equal(doubling_ks(300), [1, 2, 4, 8, 16, 32, 64, 128, 256])


def test_with_the_notes_parameters_pass_at_1_rises_and_the_minority_falls():
    runs = compare_methods(minority_type_model(), ks=[1, 4, 16, 64])
    for method, run in runs.items():
        assert run.overall[-1, 0] > run.overall[0, 0] + 0.04, method  # pass@1 up by 0.05 to 0.07
        assert np.all(run.pass_at_k[-1, 1] < run.pass_at_k[0, 1]), method  # the minority falls at every k
        assert run.overall[-1, 2] < run.overall[0, 2], method  # so does the benchmark's pass@16: the crossover
    np.testing.assert_array_equal(runs["psr"].theta, runs["nsr"].theta)  # identical in expectation
    minority_16 = {method: run.pass_at_k[-1, 1, 2] for method, run in runs.items()}
    # larger expected steps (GRPO c in [1.40, 1.50] > 1 + lambda > 1 > (G-1)/G) narrow the minority more
    assert minority_16["grpo"] < minority_16["w_reinforce"] < minority_16["psr"] < minority_16["dr_grpo"]


def test_the_exact_expectation_reproduces_the_notes_sgd_table():
    """Notes §3.2 (200 SGD steps, G = 4, batch 64) against the exact expected dynamics at lr = 0.05: pass@1, pass@4,
    pass@16, pass@64 and the type-2 pass@16 of PSR, NSR, W-REINFORCE and GRPO."""
    table = {
        "psr": [0.698, 0.887, 0.954, 0.998, 0.694],
        "nsr": [0.698, 0.887, 0.954, 0.998, 0.692],
        "w_reinforce": [0.702, 0.886, 0.951, 0.998, 0.675],
        "grpo": [0.716, 0.879, 0.938, 0.994, 0.590],
    }
    runs = compare_methods(minority_type_model(), methods=tuple(table), ks=[1, 4, 16, 64])
    for method, row in table.items():
        measured = [*runs[method].overall[-1], runs[method].pass_at_k[-1, 1, 2]]
        np.testing.assert_allclose(measured, row, atol=0.02, err_msg=method)


def test_separate_selectors_raise_every_type_at_every_k():
    """Notes §3.2 item 2: without shared parameters each P_t rises, hence pass@k at every k, for every method."""
    for method, run in compare_methods(minority_type_model(shared=False)).items():
        assert np.all(np.diff(run.success, axis=0) > 0), method
        assert np.all(np.diff(run.pass_at_k, axis=0) >= 0), method


def test_sampled_sgd_is_seeded_and_tracks_the_expectation():
    model = minority_type_model()
    first = simulate(model, "nsr", n_prompts=64, seed=3)
    np.testing.assert_array_equal(first.theta, simulate(model, "nsr", n_prompts=64, seed=3).theta)
    assert first.sampled and not simulate(model, "nsr").sampled
    exact = simulate(model, "nsr").overall[-1, 0]
    finals = [simulate(model, "nsr", n_prompts=64, seed=seed).overall[-1, 0] for seed in range(8)]
    assert abs(np.mean(finals) - exact) < 0.005


def test_bad_input_names_the_argument():
    model = minority_type_model()
    with pytest.raises(ValueError, match="^method: expected one of"):
        simulate(model, "ppo")
    with pytest.raises(ValueError, match="^group_size: grpo needs"):
        simulate(model, "grpo", group_size=1)
    with pytest.raises(ValueError, match="^seed: sampled batches need"):
        simulate(model, "psr", n_prompts=8)
    with pytest.raises(ValueError, match="^seed: exact expectations"):
        simulate(model, "psr", seed=0)
    with pytest.raises(ValueError, match="^lr: expected"):
        simulate(model, "psr", lr=0.0)
    with pytest.raises(ValueError, match="^type_weights: expected a probability vector"):
        TwoStrategyModel(
            np.array([0.5, 0.6]), model.success_a, model.success_b, model.features, model.theta, ("x", "y")
        )
    with pytest.raises(ValueError, match="^features: expected shape"):
        TwoStrategyModel(model.type_weights, model.success_a, model.success_b, np.eye(3), model.theta, ("x", "y"))
    with pytest.raises(ValueError, match="^success: expected probabilities"):
        pass_at_k(np.array([1.5]), [1])
