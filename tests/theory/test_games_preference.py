"""Preference games, their generators, and the equilibrium: exploitability identities, the KL certificate, and the
ground-truth solver against independent computations (scipy root, a two-player logit QRE, the LP of the game)."""

import tracemalloc

import numpy as np
import pytest
from scipy.optimize import linprog, minimize, root
from scipy.special import expit, log_softmax, logsumexp, softmax

from theory.games import (
    LowRankPreference,
    PreferenceGame,
    annotator_population,
    annotator_population_game,
    best_response_logits,
    bradley_terry_game,
    cyclic_game,
    dirichlet_reference,
    duality_gap,
    exploitability,
    kl,
    kl_certificate,
    low_rank_game,
    random_game,
    residual,
    solve_equilibrium,
    span,
    stack_games,
    uniform_reference,
    unregularised_exploitability,
    zipf_reference,
)


def three_cycle(P: np.ndarray) -> tuple[int, int, int] | None:
    """Actions a > b > c > a with every preference > 1/2, if any."""
    beats = P > 0.5
    for a, b in zip(*np.nonzero(beats), strict=True):
        closing = np.flatnonzero(beats[b] & beats[:, a])
        if closing.size:
            return int(a), int(b), int(closing[0])
    return None


def families(n_actions: int, beta: float) -> dict[str, PreferenceGame]:
    """One game per family, with non-uniform references (uniform mu makes pi* = mu on the cyclic game)."""
    return {
        "random": random_game(n_actions, beta, reference=dirichlet_reference(n_actions, seed=1), seed=0),
        "cyclic": cyclic_game(n_actions, beta, reference=zipf_reference(n_actions)),
        "bradley_terry": bradley_terry_game(n_actions, beta, reference=dirichlet_reference(n_actions, seed=3), seed=2),
        "population": annotator_population_game(n_actions, 5, beta, reference=dirichlet_reference(n_actions, seed=5)),
        "low_rank": low_rank_game(n_actions, 3, beta, reference=dirichlet_reference(n_actions, seed=7), seed=6),
    }


# --------------------------------------------------------------------------------------------- validation

GOOD_P = np.array([[0.5, 0.8, 0.3], [0.2, 0.5, 0.6], [0.7, 0.4, 0.5]])
GOOD_MU = np.array([0.2, 0.3, 0.5])


def _with(entries):
    P = GOOD_P.copy()
    for (i, j), value in entries.items():
        P[i, j] = value
    return P


@pytest.mark.parametrize(
    "preference, reference, beta, error, pattern",
    [
        (np.full((3, 4), 0.5), GOOD_MU, 1.0, ValueError, r"^preference: expected a square"),
        (np.full(3, 0.5), GOOD_MU, 1.0, ValueError, r"^preference: expected a square"),
        (_with({(0, 1): 0.9}), GOOD_MU, 1.0, ValueError, r"^preference: expected P \+ P\^T = 1.*max deviation 0\.1"),
        (
            _with({(0, 1): 1.2, (1, 0): -0.2}),
            GOOD_MU,
            1.0,
            ValueError,
            r"^preference: expected probabilities in \[0, 1\]",
        ),
        (_with({(0, 1): np.nan}), GOOD_MU, 1.0, ValueError, r"^preference: expected finite"),
        (GOOD_P.astype(complex), GOOD_MU, 1.0, TypeError, r"^preference: expected real numbers"),
        (GOOD_P, np.array([0.0, 0.5, 0.5]), 1.0, ValueError, r"^reference: expected strictly positive"),
        (GOOD_P, np.array([0.2, 0.3, 0.6]), 1.0, ValueError, r"^reference: expected probabilities summing to 1.*1\.1"),
        (GOOD_P, np.array([0.2, np.nan, 0.5]), 1.0, ValueError, r"^reference: expected finite"),
        (GOOD_P, np.array([0.5, 0.5]), 1.0, ValueError, r"^reference: expected shape \(3,\)"),
        (GOOD_P, GOOD_MU, 0.0, ValueError, r"^beta: expected a positive finite"),
        (GOOD_P, GOOD_MU, -1.0, ValueError, r"^beta: expected a positive finite"),
        (GOOD_P, GOOD_MU, np.inf, ValueError, r"^beta: expected a positive finite"),
        (GOOD_P, GOOD_MU, "0.1", TypeError, r"^beta: expected a positive number"),
        (np.stack([GOOD_P] * 2), np.stack([GOOD_MU] * 3), 1.0, ValueError, r"^reference: its batch size disagrees"),
        (GOOD_P, np.stack([GOOD_MU] * 3), np.ones(2), ValueError, r"^beta: its batch size disagrees"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(preference, reference, beta, error, pattern):
    with pytest.raises(error, match=pattern):
        PreferenceGame(preference, reference, beta)


def test_low_rank_factors_are_validated():
    with pytest.raises(ValueError, match=r"^U: expected U and V of the same shape"):
        LowRankPreference(np.ones((5, 2)), np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"^U: expected finite"):
        LowRankPreference(np.full((5, 2), np.nan), np.ones((5, 2)))


def test_dtypes_are_kept_and_the_game_is_immutable():
    game = PreferenceGame(GOOD_P.astype(np.float32), GOOD_MU, 0.5)
    assert game.dtype == np.float32 and game.reference.dtype == np.float32
    assert PreferenceGame(GOOD_P.tolist(), GOOD_MU, 1).dtype == np.float64
    assert game.astype(np.float64).dtype == np.float64 and game.n_actions == 3 and game.batch_shape == ()
    with pytest.raises(AttributeError):
        game.beta = 1.0


def test_matvec_for_one_policy_a_stack_of_policies_and_a_batch_of_games():
    game = random_game(7, 0.3, seed=4)
    policies = np.random.default_rng(0).dirichlet(np.ones(7), size=5)
    np.testing.assert_allclose(game.matvec(policies[0]), game.preference @ policies[0], atol=1e-15)
    np.testing.assert_allclose(game.matvec(policies), policies @ game.preference.T, atol=1e-15)
    batch = stack_games([random_game(7, beta, seed=s) for s, beta in enumerate([0.1, 0.2, 0.3, 0.4, 0.5])])
    assert batch.batch_shape == (5,)
    expected = np.stack([batch[b].preference @ policies[b] for b in range(5)])
    np.testing.assert_allclose(batch.matvec(policies), expected, atol=1e-15)
    assert batch[2].beta == 0.3 and np.array_equal(batch[-1].preference, random_game(7, 0.5, seed=4).preference)
    shared = PreferenceGame(game.preference, np.stack([uniform_reference(7), zipf_reference(7)]), np.array([0.1, 1.0]))
    assert shared.batch_shape == (2,) and shared[1].beta == 1.0
    np.testing.assert_allclose(shared.matvec(policies[:2]), policies[:2] @ game.preference.T, atol=1e-15)


# --------------------------------------------------------------------------------------------- generators


def test_random_game_is_a_seeded_lower_triangle_completed_to_p_plus_pt_equal_one():
    game = random_game(50, 0.1, seed=9)
    P = game.preference
    assert np.array_equal(P, random_game(50, 0.1, seed=9).preference)
    assert not np.array_equal(P, random_game(50, 0.1, seed=10).preference)
    assert np.array_equal(P + P.T, np.ones((50, 50))) and np.all(np.diag(P) == 0.5)
    lower = P[np.tril_indices(50, -1)]
    assert 0 < lower.min() and lower.max() < 1 and abs(lower.mean() - 0.5) < 0.05  # U(0, 1)
    np.testing.assert_array_equal(game.reference, np.full(50, 1 / 50))
    assert random_game(50, 0.1, seed=9, dtype=np.float32).dtype == np.float32


def test_cyclic_game_is_generalised_rock_paper_scissors():
    P = cyclic_game(5, 1.0, strength=0.4).preference
    expected = np.array(
        [
            [0.5, 0.9, 0.9, 0.1, 0.1],
            [0.1, 0.5, 0.9, 0.9, 0.1],
            [0.1, 0.1, 0.5, 0.9, 0.9],
            [0.9, 0.1, 0.1, 0.5, 0.9],
            [0.9, 0.9, 0.1, 0.1, 0.5],
        ]
    )
    np.testing.assert_allclose(P, expected, atol=1e-15)
    even = cyclic_game(4, 1.0, strength=0.3).preference
    np.testing.assert_allclose(even[0], [0.5, 0.8, 0.5, 0.2], atol=1e-15)  # the opposite action ties
    np.testing.assert_allclose(cyclic_game(3, 1.0, strength=0.5).preference, [[0.5, 1, 0], [0, 0.5, 1], [1, 0, 0.5]])


def test_bradley_terry_is_transitive_and_a_population_of_them_is_not():
    game = bradley_terry_game(12, 0.1, scale=2.0, seed=3)
    rewards = np.random.default_rng(3).normal(0.0, 2.0, 12)
    np.testing.assert_allclose(game.preference, expit(rewards[:, None] - rewards[None, :]), atol=1e-15)
    assert three_cycle(game.preference) is None
    components = annotator_population(8, 3, seed=0)
    assert components.shape == (3, 8, 8)
    np.testing.assert_allclose(annotator_population_game(8, 3, 0.1, seed=0).preference, components.mean(axis=0))
    cycles = []
    for seed in range(20):
        components = annotator_population(8, 3, seed=seed)
        assert all(three_cycle(component) is None for component in components)
        cycle = three_cycle(components.mean(axis=0))
        if cycle is not None:
            cycles.append((seed, cycle))
    assert cycles  # a Condorcet cycle from transitive annotators
    seed, (a, b, c) = cycles[0]
    P = annotator_population(8, 3, seed=seed).mean(axis=0)
    assert P[a, b] > 0.5 and P[b, c] > 0.5 and P[c, a] > 0.5


def test_reference_policies():
    np.testing.assert_allclose(uniform_reference(4), [0.25] * 4)
    mu = dirichlet_reference(1000, alpha=0.5, seed=1)
    assert np.all(mu > 0) and mu.sum() == pytest.approx(1, abs=1e-12)
    assert np.array_equal(mu, dirichlet_reference(1000, alpha=0.5, seed=1))
    zipf = zipf_reference(100, exponent=1.1)
    assert zipf.sum() == pytest.approx(1, abs=1e-12) and zipf[-1] > 0
    assert zipf[0] / zipf[9] == pytest.approx(10**1.1, rel=1e-12)
    with pytest.raises(ValueError, match=r"^n_actions:"):
        uniform_reference(1)
    with pytest.raises(TypeError, match=r"^seed:"):
        random_game(5, 0.1, seed=1.5)


# --------------------------------------------------------------------------------------------- low rank


def test_low_rank_preference_matches_its_dense_matrix():
    game = low_rank_game(200, 8, 0.1, seed=5)
    P = game.preference.to_dense()
    assert P.min() >= 0 and P.max() <= 1 and np.abs(P + P.T - 1).max() < 1e-15
    U, V = game.preference.U, game.preference.V
    c = 2 * np.linalg.norm(U, axis=1).max() * np.linalg.norm(V, axis=1).max()
    np.testing.assert_allclose(P, 0.5 + (U @ V.T - V @ U.T) / (2 * c), atol=1e-15)
    policies = np.random.default_rng(1).dirichlet(np.ones(200), size=3)
    np.testing.assert_allclose(game.matvec(policies), policies @ P.T, atol=1e-14)
    np.testing.assert_allclose(game.matvec(policies[0]), P @ policies[0], atol=1e-14)
    rows, cols = np.arange(200), np.random.default_rng(2).permutation(200)
    np.testing.assert_allclose(game.preference.entries(rows, cols), P[rows, cols], atol=1e-15)


def test_low_rank_matvec_at_a_million_actions_never_forms_the_matrix():
    n = 1_000_000
    game = low_rank_game(n, 2, 0.1, seed=0)
    pi = dirichlet_reference(n, seed=1)
    tracemalloc.start()
    product = game.matvec(pi)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 8 * n  # a few vectors of length A; P itself would take 8 TB
    for row in (0, 123_456, n - 1):  # row y of P, built entry by entry, against the matrix-free product
        entries = game.preference.entries(np.full(n, row), np.arange(n))
        assert product[row] == pytest.approx(entries @ pi, abs=1e-12)


# --------------------------------------------------------------------------------------------- exploitability


def test_exploitability_equals_the_best_response_value_and_the_duality_gap_is_twice_it():
    game = random_game(4, 0.3, reference=dirichlet_reference(4, seed=2), seed=1)
    P, mu, beta = game.preference, game.reference, game.beta
    pi = np.array([0.1, 0.2, 0.3, 0.4])

    def kl_to_mu(p):
        return float(np.sum(p * np.log(p / mu)))

    def payoff(first, second):  # J_beta(first, second)
        return first @ P @ second - beta * kl_to_mu(first) + beta * kl_to_mu(second)

    best = minimize(lambda z: -payoff(softmax(z), pi), np.zeros(4), method="BFGS", options={"gtol": 1e-12})
    worst = minimize(lambda z: payoff(pi, softmax(z)), np.zeros(4), method="BFGS", options={"gtol": 1e-12})
    gibbs = beta * logsumexp(np.log(mu) + P @ pi / beta) + beta * kl_to_mu(pi) - 0.5
    assert exploitability(game, pi) == pytest.approx(-best.fun - 0.5, abs=1e-10)
    assert exploitability(game, pi) == pytest.approx(gibbs, abs=1e-14)
    assert duality_gap(game, pi) == pytest.approx(-best.fun - worst.fun, abs=1e-10)
    np.testing.assert_allclose(np.exp(best_response_logits(game, pi)), softmax(best.x), atol=1e-6)
    star = solve_equilibrium(game)
    assert exploitability(game, star.policy) == pytest.approx(0, abs=1e-15)
    assert unregularised_exploitability(game, pi) == pytest.approx(np.max(P @ pi) - 0.5, abs=1e-15)


def test_kl_is_accurate_for_nearby_policies_and_handles_zeros():
    p = log_softmax(np.array([0.3, -1.0, 2.0, 0.0]))
    q = log_softmax(p + 1e-9 * np.array([1.0, -2.0, 0.5, 3.0]))
    delta = p - q
    second_order = 0.5 * np.sum(np.exp(p) * (delta - np.sum(np.exp(p) * delta)) ** 2)  # exact up to O(1e-9)
    assert second_order == pytest.approx(1.0e-18, rel=0.5)
    assert kl(p, q) == pytest.approx(second_order, rel=1e-5)  # sum p (l_p - l_q) would be rounding noise here
    with np.errstate(divide="ignore"):
        assert kl(np.log([0.5, 0.5, 0.0]), np.log([0.25, 0.25, 0.5])) == pytest.approx(np.log(2), abs=1e-15)
        assert kl(np.log([0.5, 0.5]), np.log([1.0, 0.0])) == np.inf
    np.testing.assert_allclose(span(np.array([[1.0, 3.0, -2.0], [0.0, 0.0, 0.0]])), [5.0, 0.0])


@pytest.mark.parametrize("beta", [1.0, 0.1, 0.01])
def test_the_certificate_upper_bounds_kl_to_the_equilibrium(beta):
    rng = np.random.default_rng(0)
    for name, game in families(20, beta).items():
        dense = PreferenceGame(game.dense_preference(), game.reference, beta)
        star = solve_equilibrium(dense)
        assert kl_certificate(game, star.log_policy) < 1e-25
        for scale in (1e-4, 1e-2, 1.0, 5.0):  # policies from next to pi* to far away
            log_pi = log_softmax(star.log_policy + scale * rng.standard_normal((50, 20)), axis=-1)
            bound = kl_certificate(game, log_pi)
            assert np.all(kl(star.log_policy, log_pi) <= bound), name


# --------------------------------------------------------------------------------------------- ground truth


@pytest.mark.parametrize("beta", [1.0, 0.1, 0.01])
def test_the_equilibrium_satisfies_its_fixed_point_to_1e_12(beta):
    for name, game in families(300, beta).items():
        if name == "low_rank":
            game = PreferenceGame(game.dense_preference(), game.reference, beta)
        result = solve_equilibrium(game)
        r = residual(game, result.log_policy)
        assert result.converged and result.newton_steps >= 1, name
        assert np.max(np.abs(r - r.mean())) <= 1e-12 and result.residual_span <= 2e-12, name
        assert result.certificate == pytest.approx(0.5 * result.residual_span**2)
        assert result.policy.sum() == pytest.approx(1, abs=1e-14)


def test_batched_equilibria_equal_the_single_ones():
    games = list(families(30, 0.1).values())[:4] + [random_game(30, 0.01, seed=11)]
    batch = stack_games(games)
    result = solve_equilibrium(batch)
    assert result.converged and result.log_policy.shape == (5, 30) and result.certificate.shape == (5,)
    for b, game in enumerate(games):
        np.testing.assert_allclose(result.log_policy[b], solve_equilibrium(game).log_policy, atol=1e-12, rtol=0)


def test_without_newton_the_solver_stops_at_a_certified_iterate():
    game = low_rank_game(5000, 4, 0.1, reference=zipf_reference(5000), seed=3)
    result = solve_equilibrium(game, tol=1e-16)
    assert result.converged and result.newton_steps == 0 and result.certificate <= 1e-16
    assert result.queries == 2 * result.n_iter and "converged" in result.message


def test_a_callback_stops_the_ground_truth_solver():
    result = solve_equilibrium(random_game(20, 0.01, seed=0), callback=lambda state: state.n_iter == 5)
    assert not result.converged and result.n_iter == 5 and "callback" in result.message


@pytest.mark.parametrize("seed", [0, 1])
def test_uniform_reference_equilibrium_is_the_two_player_logit_qre(seed):
    """With uniform mu, pi* is the logit QRE (lambda = 1 / beta) of the zero-sum game with payoff P - 1/2: solved
    here as the 2A equations x = softmax(lambda M y), y = softmax(-lambda M^T x) by scipy, from an asymmetric start."""
    game = random_game(12, 0.2, seed=seed)
    M, qre_lambda = game.preference - 0.5, 1 / 0.2

    def equations(z):
        x_log, y_log = z[:12], z[12:]
        return np.concatenate(
            [
                x_log - log_softmax(qre_lambda * M @ np.exp(y_log)),
                y_log - log_softmax(-qre_lambda * M.T @ np.exp(x_log)),
            ]
        )

    start = np.concatenate([log_softmax(np.arange(12.0) / 12), log_softmax(-np.arange(12.0) / 12)])
    solution = root(equations, start, method="hybr", tol=1e-14)
    assert np.abs(equations(solution.x)).max() < 1e-12
    star = solve_equilibrium(game)
    np.testing.assert_allclose(solution.x[:12], star.log_policy, atol=1e-11)
    np.testing.assert_allclose(solution.x[12:], star.log_policy, atol=1e-11)


def test_equilibrium_matches_scipy_root_on_the_fixed_point_with_a_non_uniform_reference():
    game = bradley_terry_game(15, 0.2, reference=zipf_reference(15, 1.5), seed=4)
    log_mu = np.log(game.reference)

    def fixed_point(z):
        return z - log_mu - game.preference @ softmax(z) / game.beta

    solution = root(fixed_point, log_mu, method="hybr", tol=1e-14)
    assert np.abs(fixed_point(solution.x)).max() < 1e-12
    np.testing.assert_allclose(solve_equilibrium(game).log_policy, log_softmax(solution.x), atol=1e-12)


def test_as_beta_vanishes_the_equilibrium_approaches_the_lp_solution_of_the_unregularised_game():
    n = 15
    game = random_game(n, 1.0, seed=3)
    M = game.preference - 0.5  # value 0: the game is symmetric
    lp = linprog(
        np.r_[np.zeros(n), -1.0],
        A_ub=np.c_[-M.T, np.ones(n)],
        b_ub=np.zeros(n),
        A_eq=np.r_[np.ones(n), 0.0][None],
        b_eq=[1.0],
        bounds=[(0, None)] * n + [(None, None)],
        method="highs",
    )
    maximin = lp.x[:n]
    assert lp.x[-1] == pytest.approx(0, abs=1e-12) and unregularised_exploitability(game, maximin) < 1e-9
    gaps, distances = [], []
    for beta in (1e-1, 1e-2, 1e-3):
        star = solve_equilibrium(PreferenceGame(game.preference, game.reference, beta), max_iter=20_000)
        gap = unregularised_exploitability(game, star.policy)
        assert star.converged and 0 < gap <= beta * np.log(n)  # max_y beta log(pi*(y) / mu(y)) - beta KL <= beta log A
        gaps.append(gap)
        distances.append(np.abs(star.policy - maximin).sum())
    assert gaps[0] > gaps[1] > gaps[2] and distances[0] > distances[1] > distances[2]
    assert distances[-1] < 0.05  # this game's Nash equilibrium is unique, so the limit is the LP solution


def test_the_certificate_is_within_a_factor_four_of_kl_near_a_uniform_two_action_equilibrium():
    """Near pi* = (1/2, 1/2) with weak coupling, KL ~ delta^2 / 8 and 1/2 span(r)^2 ~ delta^2 / 2: the bound is
    tight up to the factor 4 that Pinsker's inequality loses, so it is neither vacuous nor inflated."""
    game = PreferenceGame(np.array([[0.5, 0.6], [0.4, 0.5]]), np.array([0.5, 0.5]), 10.0)
    star = solve_equilibrium(game).log_policy
    for delta in (1e-2, -1e-3, 1e-4):
        log_pi = log_softmax(star + np.array([delta, 0.0]))
        ratio = kl(star, log_pi) / kl_certificate(game, log_pi)
        assert 0.24 < ratio <= 0.25
