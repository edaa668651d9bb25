"""pass@k against brute-force combinatorics and exact binomials; bootstrap, support, entropies, usage, KL by hand."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from lab.rlvr.eval import answer_entropy as answer_entropy_of
from lab.rlvr.eval import (
    bootstrap_interval,
    doubling_ks,
    empirical_support,
    evaluate,
    kl_to_base,
    minority_breakdown,
    pass_at_k,
    pass_at_k_curve,
    strategy_usage,
    support_change,
    token_entropy,
)


def exact_pass_at_k(n: int, c: int, k: int) -> float:
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_equals_the_fraction_of_k_subsets_holding_a_correct_sample(n):
    for c in range(n + 1):  # samples 0..c-1 are the correct ones
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))
            hits = sum(any(sample < c for sample in subset) for subset in subsets)
            assert pass_at_k(n, c, k) == pytest.approx(hits / len(subsets), rel=1e-14, abs=1e-15), (n, c, k)


@pytest.mark.parametrize(
    ("n", "c", "k"), [(1024, 5, 256), (1024, 1, 1), (1024, 1000, 24), (1024, 512, 512), (10**6, 1, 1), (4096, 7, 2000)]
)
def test_pass_at_k_is_stable_at_large_n(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(exact_pass_at_k(n, c, k), rel=1e-13)


def test_pass_at_k_edge_values_are_exact():
    assert pass_at_k(10, 0, 3) == 0.0 and math.copysign(1, pass_at_k(10, 0, 3)) == 1  # +0.0, not -0.0
    assert pass_at_k(10, 8, 3) == 1.0  # n - c = 2 < k: every 3-subset holds a correct sample
    assert pass_at_k(10, 10, 10) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3, rel=1e-15)


def test_vectorised_pass_at_k_equals_the_scalar_form_without_nan_intermediates():
    rng = np.random.default_rng(7)
    n = rng.integers(1, 65, size=400)
    c = rng.integers(0, n + 1)
    c[:20], c[20:40] = 0, n[20:40]  # all wrong, all right
    k = rng.integers(1, n + 1)
    with np.errstate(all="raise"):  # a masked-out term that went through log1p(-1) or 0/0 would raise here
        vectorised = pass_at_k(n, c, k)
    scalar = np.array([pass_at_k(int(a), int(b), int(d)) for a, b, d in zip(n, c, k, strict=True)])
    np.testing.assert_array_equal(vectorised, scalar)
    exact = np.array([exact_pass_at_k(int(a), int(b), int(d)) for a, b, d in zip(n, c, k, strict=True)])
    np.testing.assert_allclose(vectorised, exact, rtol=1e-13, atol=1e-16)
    assert np.all(vectorised[:20] == 0.0) and np.all(vectorised[20:40] == 1.0)


def test_pass_at_k_is_non_decreasing_in_k_and_in_c():
    n = 32
    table = np.array([[pass_at_k(n, c, k) for k in range(1, n + 1)] for c in range(n + 1)])
    assert np.all(np.diff(table, axis=1) >= 0) and np.all(np.diff(table, axis=0) >= 0)
    assert np.all(np.diff(table[1:-1], axis=1)[:, 0] > 0)  # strictly for 0 < c < n at small k


@pytest.mark.parametrize(
    ("args", "name"),
    [((4, 5, 1), "c"), ((4, 2, 5), "k"), ((4, 2, 0), "k"), ((4, -1, 1), "c"), ((0, 0, 1), "n"), ((-3, 0, 1), "n")],
)
def test_pass_at_k_bad_counts_raise_naming_the_argument(args, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        pass_at_k(*args)


def test_pass_at_k_rejects_fractional_counts_and_unbroadcastable_shapes():
    with pytest.raises(ValueError, match="^c:"):
        pass_at_k(4, 1.5, 1)
    with pytest.raises(ValueError, match="^c:"):
        pass_at_k([4, 4, 4], [1, 2], 1)


def test_doubling_ks_and_the_curve_mean_over_problems():
    np.testing.assert_array_equal(doubling_ks(8), [1, 2, 4, 8])
    np.testing.assert_array_equal(doubling_ks(10), [1, 2, 4, 8, 10])
    np.testing.assert_array_equal(doubling_ks(1), [1])
    curve = pass_at_k_curve([0, 1, 4], 4)
    np.testing.assert_array_equal(curve.ks, [1, 2, 4])
    expected = np.array([[0, 0, 0], [1 / 4, 1 / 2, 1], [1, 1, 1]])
    np.testing.assert_allclose(curve.per_problem, expected, rtol=1e-15)
    np.testing.assert_allclose(curve.mean, expected.mean(axis=0), rtol=1e-15)
    # per-problem n: the default grid stops at the smallest n
    mixed = pass_at_k_curve([1, 2], [4, 8])
    np.testing.assert_array_equal(mixed.ks, [1, 2, 4])
    assert mixed.per_problem[1, 2] == pytest.approx(exact_pass_at_k(8, 2, 4), rel=1e-14)
    with pytest.raises(ValueError, match="^ks:"):
        pass_at_k_curve([1, 2], [4, 8], ks=[1, 8])


def test_bootstrap_interval_covers_the_mean_matches_the_normal_width_and_shrinks_with_problems():
    rng = np.random.default_rng(3)
    widths = {}
    for n_problems in (25, 400):
        values = rng.uniform(0, 1, n_problems)
        low, high = bootstrap_interval(values, n_boot=4000, confidence=0.95, seed=11)
        assert low < values.mean() < high
        normal_width = 2 * 1.959964 * values.std(ddof=0) / np.sqrt(n_problems)
        assert high - low == pytest.approx(normal_width, rel=0.12)
        widths[n_problems] = high - low
    assert widths[400] < widths[25] / 2.5  # ~ sqrt(16) = 4 times narrower
    assert bootstrap_interval(values, n_boot=500, seed=5) == bootstrap_interval(values, n_boot=500, seed=5)


def test_bootstrap_resamples_problems_not_samples():
    # one problem, 1 correct of 4: a with-replacement best@4 would scatter around 0.68; resampling the single
    # problem leaves pass@4 = 1 untouched
    curve = pass_at_k_curve([1], 4, ks=[4])
    low, high = curve.interval(n_boot=200, seed=0)
    assert low[0] == high[0] == 1.0
    # columns are bootstrapped jointly and each matches its own 1-D interval under the same seed
    values = np.random.default_rng(0).uniform(size=(50, 3))
    low, high = bootstrap_interval(values, n_boot=300, seed=2)
    assert (low[1], high[1]) == pytest.approx(bootstrap_interval(values[:, 1], n_boot=300, seed=2), rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(per_problem_values=[]), "per_problem_values"),
        (dict(per_problem_values=[1.0, np.nan]), "per_problem_values"),
        (dict(per_problem_values=[1.0], n_boot=0), "n_boot"),
        (dict(per_problem_values=[1.0], confidence=1.0), "confidence"),
    ],
)
def test_bootstrap_bad_inputs_raise_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        bootstrap_interval(**kwargs)


def test_support_counts_distinct_correct_answers_and_compares_models():
    answers = [["1+2", "2+1", "1+2", "junk"], ["3*3", "9", "3*3", "3*3"], ["x", "y", "z", "w"]]
    correct = [[True, True, True, False], [True, False, True, True], [False, False, False, False]]
    support = empirical_support(answers, correct)
    np.testing.assert_array_equal(support.counts, [2, 1, 0])
    assert support.answers[0] == {"1+2", "2+1"} and support.coverage == pytest.approx(2 / 3)
    other = empirical_support([["2+1", "2+1"], ["3*3", "3+3+3"], ["w", "x"]], [[True, True], [True, True], [0, 1]])
    change = support_change(support, other)
    np.testing.assert_array_equal(change["preserved"], [1, 1, 0])
    np.testing.assert_array_equal(change["shrunk"], [1, 0, 0])
    np.testing.assert_array_equal(change["expanded"], [0, 1, 1])
    np.testing.assert_array_equal(support.union(other).counts, [2, 2, 1])
    with pytest.raises(ValueError, match="^correct_per_prompt:"):
        empirical_support(answers, [[True]] * 3)
    with pytest.raises(TypeError, match="^answers_per_prompt:"):
        empirical_support(["1+2", "2+1"], [[True], [True]])


def test_answer_entropy_in_nats_by_hand():
    entropies = answer_entropy_of([["a", "a", "b", "b"], ["x"] * 4, ["a", "b", "c", "d"], ["a", "a", "a", "b"]])
    expected = [np.log(2), 0.0, np.log(4), -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))]
    np.testing.assert_allclose(entropies, expected, rtol=1e-14, atol=1e-15)
    with pytest.raises(ValueError, match="^answers:"):
        answer_entropy_of([["a"], []])


def test_token_entropy_averages_valid_positions_only():
    entropies = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, np.nan]])  # the padded NaN must never be read
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    assert token_entropy(entropies, mask) == pytest.approx(7 / 3)
    np.testing.assert_allclose(token_entropy(entropies, mask, axis=1), [1.5, 4.0])
    with pytest.raises(ValueError, match="^mask:"):
        token_entropy(entropies, np.zeros((2, 3)), axis=1)
    with pytest.raises(ValueError, match="^mask:"):
        token_entropy(entropies, mask[:, :2])


def test_strategy_usage_fractions():
    usage = strategy_usage([["add", "add", "mul", "none"], ["add", "mul", "mul", "mul"]])
    assert usage == {"add": 3 / 8, "mul": 4 / 8, "none": 1 / 8}
    assert strategy_usage(["b", "a", "b", "b"]) == {"a": 0.25, "b": 0.75}
    with pytest.raises(TypeError, match="^strategies:"):
        strategy_usage([[1, 2]])


def test_kl_to_base_matches_the_exact_categorical_kl():
    policy = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    base = np.array([0.2, 0.2, 0.2, 0.2, 0.2])
    exact = float(np.sum(policy * np.log(policy / base)))
    exact_sd = np.sqrt(np.sum(policy * np.log(policy / base) ** 2) - exact**2)
    draws = np.random.default_rng(2024).choice(policy.size, size=20_000, p=policy)
    estimate = kl_to_base(np.log(policy[draws]), np.log(base[draws]))
    assert estimate.n_samples == 20_000
    assert abs(estimate.value - exact) < 4 * estimate.standard_error
    assert estimate.standard_error == pytest.approx(exact_sd / np.sqrt(20_000), rel=0.05)
    same = kl_to_base(np.log(policy[draws]), np.log(policy[draws]))
    assert same.value == 0.0 and same.standard_error == 0.0
    with pytest.raises(ValueError, match="^logp_base_seq:"):
        kl_to_base([-1.0, -2.0], [-1.0])
    with pytest.raises(ValueError, match="^logp_policy_seq:"):
        kl_to_base([0.5, -2.0], [-1.0, -1.0])


def test_evaluate_builds_the_report_and_splits_it_by_prompt_type():
    answers = [["4", "4", "5", "4"], ["7", "8", "9", "6"], ["2+3", "3+2", "x", "2+3"]]
    rewards = np.array([[1, 1, 0, 1], [0, 0, 0, 0], [1, 1, 0, 1]])
    strategies = [["add", "add", "none", "add"], ["mul"] * 4, ["add", "mul", "none", "mul"]]
    entropies = np.arange(3 * 4 * 2, dtype=float).reshape(3, 4, 2)
    mask = np.ones((3, 4, 2))
    mask[:, :, 1] = 0
    logp_policy = -np.ones((3, 4))
    logp_base = -np.full((3, 4), 2.0)
    logp_base[0] = -1.5
    report = evaluate(
        answers,
        rewards,
        strategies,
        token_entropies=entropies,
        token_mask=mask,
        logp_policy_seq=logp_policy,
        logp_base_seq=logp_base,
        n_boot=200,
        seed=0,
    )
    np.testing.assert_array_equal(report.correct_counts, [3, 0, 3])
    np.testing.assert_array_equal(report.curve.ks, [1, 2, 4])
    np.testing.assert_array_equal(report.support.counts, [1, 0, 2])
    np.testing.assert_allclose(report.answer_entropy[1], np.log(4))
    np.testing.assert_allclose(report.token_entropy, [3.0, 11.0, 19.0])  # mean of the even entries per prompt
    np.testing.assert_allclose(report.kl_to_ref, [0.5, 1.0, 1.0])
    np.testing.assert_allclose(report.strategy_usage["mul"], [0.0, 1.0, 0.5])
    summary = report.summary
    assert summary["pass@1"] == pytest.approx((3 / 4 + 0 + 3 / 4) / 3)
    assert summary["pass@2"] == pytest.approx((1 + 0 + 1) / 3) and summary["pass@4"] == pytest.approx(2 / 3)
    assert summary["support"] == pytest.approx(1.0)
    assert summary["entropy"] == pytest.approx(11.0) and summary["kl_to_ref"] == pytest.approx(2.5 / 3)
    assert summary["strategy/add"] == pytest.approx((3 / 4 + 0 + 1 / 4) / 3)
    assert np.all(report.curve_low <= report.curve.mean) and np.all(report.curve.mean <= report.curve_high)
    split = minority_breakdown(report, np.array([False, True, False]))
    np.testing.assert_array_equal(split["minority"].mean, [0, 0, 0])
    np.testing.assert_allclose(split["majority"].mean, [0.75, 1, 1])
    with pytest.raises(ValueError, match="^is_minority:"):
        minority_breakdown(report, np.array([True, True, True]))
    bare = evaluate(answers, rewards.astype(bool), ks=[2], n_boot=50)
    assert set(bare.summary) == {"pass@1", "pass@2", "support", "answer_entropy"}
    with pytest.raises(ValueError, match="^rewards:"):
        evaluate(answers, rewards * 2)
    with pytest.raises(ValueError, match="^rewards:"):
        evaluate(answers, rewards[:, :3])
    with pytest.raises(ValueError, match="^token_mask:"):
        evaluate(answers, rewards, token_entropies=entropies)
