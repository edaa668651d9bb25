"""Nash mirror prox and its baselines: the certified rate, the certificate's validity, Nash-MD's bias, batches,
float32, and the stochastic (approximate) variant's noise floor."""

import numpy as np
import pytest
from scipy.optimize import root
from scipy.special import log_softmax, softmax

from theory.games import (
    METHODS,
    NashMirrorProx,
    PreferenceGame,
    annotator_population_game,
    bradley_terry_game,
    cyclic_game,
    dirichlet_reference,
    exploitability,
    kl,
    kl_certificate,
    low_rank_game,
    random_game,
    solve_equilibrium,
    solve_nash,
    stack_games,
    zipf_reference,
)

BETAS = [1.0, 0.1, 0.01]


def families(n_actions: int, beta: float) -> dict[str, PreferenceGame]:
    """One game per family, with non-uniform references (uniform mu makes pi* = mu on the cyclic game)."""
    return {
        "random": random_game(n_actions, beta, reference=dirichlet_reference(n_actions, seed=1), seed=0),
        "cyclic": cyclic_game(n_actions, beta, reference=zipf_reference(n_actions)),
        "bradley_terry": bradley_terry_game(n_actions, beta, reference=dirichlet_reference(n_actions, seed=3), seed=2),
        "population": annotator_population_game(n_actions, 5, beta, reference=dirichlet_reference(n_actions, seed=5)),
        "low_rank": low_rank_game(n_actions, 3, beta, reference=dirichlet_reference(n_actions, seed=7), seed=6),
    }


def exact(game: PreferenceGame) -> np.ndarray:
    """log pi* to the rounding floor (Newton on the dense matrix, also for low-rank games)."""
    dense = PreferenceGame(game.dense_preference(), game.reference, game.beta)
    result = solve_equilibrium(dense)
    assert result.converged and result.residual_span < 1e-12
    return result.log_policy


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("n_actions", [5, 40, 120])
def test_nash_mp_kl_never_exceeds_the_certified_rate_on_every_family(beta, n_actions):
    """KL(pi* || pi_k) <= (1 + 2 beta)^(-N/2) KL(pi* || mu) with N = 2k preference queries, at every iterate."""
    for name, game in families(n_actions, beta).items():
        star = exact(game)
        initial = kl(star, np.log(game.reference))
        result = solve_nash(game, "nash_mp", tol=1e-22, max_iter=2500, target=star)
        queries, divergence = result.history["queries"], result.history["kl"]
        np.testing.assert_array_equal(queries, 2 * np.arange(1, result.n_iter + 1))
        measurable = divergence > 1e-24  # below that the reference pi* itself is the limit
        bound = (1 + 2 * beta) ** (-queries / 2) * initial
        assert np.all(divergence[measurable] <= bound[measurable] * (1 + 1e-9)), name
        assert result.converged and divergence[-1] < 1e-20, name


def run_every_method(game, star, max_iter):
    """Every method (Nash-MD with both schedules, optimistic with two steps) from mu with the exact target, stopped
    at a certified 1e-24, above the ~1e-30 floor where the reference pi* itself is the limit."""
    configurations = {method: (method, {}) for method in METHODS} | {
        "nash_md": ("nash_md", {"step": 0.5 / game.beta}),
        "nash_md_decaying": ("nash_md", {"step": "decaying"}),
        "optimistic_2": ("optimistic", {"step": 2.0}),
        "approx_nash_mp": ("approx_nash_mp", {"n_samples": 200, "seed": 3}),
    }
    results = {}
    for label, (method, options) in configurations.items():
        budget = 60 if method == "approx_nash_mp" else max_iter
        results[label] = solve_nash(game, method, tol=1e-24, max_iter=budget, target=star, **options)
    return results


@pytest.mark.parametrize("beta", BETAS)
def test_the_certificate_upper_bounds_the_true_kl_for_every_method_and_family(beta):
    for name, game in families(20, beta).items():
        star = exact(game)
        for label, result in run_every_method(game, star, max_iter=300).items():
            history = result.history
            assert np.all(history["kl"] <= history["certificate"]), (name, label)
            assert np.all(history["exploitability"] >= 0), (name, label)


def test_each_method_makes_its_number_of_queries():
    game = random_game(10, 0.5, seed=0)
    per_iteration = {"nash_mp": 2, "nash_md": 1, "mmd": 1, "extragradient": 2, "optimistic": 1}
    for method, count in per_iteration.items():
        result = solve_nash(game, method, tol=0.0, max_iter=7)
        expected = count * 7 + (method == "optimistic")  # the optimistic method's first leading step needs P pi_0
        assert result.queries == expected and result.history["queries"][-1] == expected, method
    approx = solve_nash(game, "approx_nash_mp", tol=0.0, max_iter=3, n_samples=50, inner_steps=2)
    assert approx.queries == 3 * 2 * 2 * 50  # iterations x prox steps x gradient steps x duels


def test_nash_md_with_a_constant_step_stalls_at_its_own_biased_fixed_point():
    game = random_game(10, 0.1, reference=dirichlet_reference(10, seed=1), seed=0)
    star = exact(game)
    step, log_mu, P = 0.5, np.log(game.reference), game.preference
    mixing = step * game.beta

    def biased_fixed_point(z):  # beta log(pi / mu) = P pi^mu + const, pi^mu ~ pi^(1 - eta' beta) mu^(eta' beta)
        return z - log_mu - P @ softmax((1 - mixing) * z + mixing * log_mu) / game.beta

    solution = root(biased_fixed_point, log_mu, method="hybr", tol=1e-14)
    assert np.abs(biased_fixed_point(solution.x)).max() < 1e-12
    plateau = kl(star, log_softmax(solution.x))
    assert plateau > 1e-7
    constant = solve_nash(game, "nash_md", step=step, tol=1e-12, max_iter=3000, target=star)
    assert not constant.converged
    assert constant.history["kl"][-1] == pytest.approx(plateau, rel=1e-8)
    np.testing.assert_allclose(constant.log_policy, log_softmax(solution.x), atol=1e-12)
    decaying = solve_nash(game, "nash_md", step="decaying", tol=1e-12, max_iter=3000, target=star)
    assert decaying.history["kl"][-1] < plateau / 100  # the decaying step is unbiased (and sublinear)
    assert np.all(np.diff(np.log(decaying.history["kl"][1000:])) < 0)


def test_extragradient_is_nash_mp_with_a_reparametrised_step():
    """lin(l, g; s) = prox(l, g; s / (1 - s beta)): the linearised extragradient equals composite mirror prox."""
    game = bradley_terry_game(15, 0.3, reference=zipf_reference(15), seed=1)
    step = 0.8
    linearised = solve_nash(game, "extragradient", step=step, tol=0.0, max_iter=25)
    composite = solve_nash(game, "nash_mp", step=step / (1 - step * game.beta), tol=0.0, max_iter=25)
    np.testing.assert_allclose(linearised.log_policy, composite.log_policy, atol=1e-13)


@pytest.mark.parametrize("beta", [1.0, 0.1])
def test_mmd_at_its_default_step_contracts_at_its_rate(beta):
    """Sokota et al.: eta' <= beta / L^2 = 4 beta gives KL(pi* || pi_k) <= (1 + eta' beta)^(-k) KL(pi* || pi_0)."""
    step = min(2.0, 4 * beta)
    for name, game in families(20, beta).items():
        star = exact(game)
        result = solve_nash(game, "mmd", tol=1e-20, max_iter=3000, target=star)
        divergence = result.history["kl"]
        bound = (1 + step * beta) ** -np.arange(1.0, result.n_iter + 1) * kl(star, np.log(game.reference))
        measurable = divergence > 1e-24
        assert result.converged and np.all(divergence[measurable] <= bound[measurable] * (1 + 1e-9)), name


def test_steps_beyond_the_certified_limit_need_the_flag_and_diverge_on_a_cyclic_game():
    game = cyclic_game(30, 0.01, reference=dirichlet_reference(30, seed=0))
    with pytest.raises(ValueError, match=r"^step: eta' = 8.0 exceeds the certified limit 2"):
        NashMirrorProx(game, step=8.0)
    unsafe = solve_nash(game, "nash_mp", step=8.0, unsafe_step=True, tol=1e-8, max_iter=1000)
    certified = solve_nash(game, "nash_mp", tol=1e-8, max_iter=1000)
    assert certified.converged and not unsafe.converged
    assert unsafe.history["certificate"][-1] > unsafe.history["certificate"][0]


@pytest.mark.parametrize(
    "method, options, pattern",
    [
        ("nash_md", {"step": 20.0}, r"^step: Nash-MD needs eta' beta <= 1"),
        ("nash_md", {"step": "fixed"}, r"^step: expected a positive number or 'decaying'"),
        ("extragradient", {"step": 11.0}, r"^step: extragradient needs eta' beta <= 1"),
        ("mmd", {"step": -1.0}, r"^step: expected a positive step"),
        ("approx_nash_mp", {"step": 3.0}, r"^step: expected eta' <= 2"),
        ("approx_nash_mp", {"n_samples": 0}, r"^n_samples: expected an integer >= 1"),
        ("approx_nash_mp", {"seed": [1, 2]}, r"^seed: expected one seed per game \(1\)"),
        ("nash_mp", {"init": [0.5, 0.5]}, r"^init: expected a policy of shape \(4,\)"),
        ("nash_mp", {"init": [0.5, 0.5, 0.5, -0.5]}, r"^init: expected strictly positive"),
        ("nash_mp", {"target": np.zeros(3)}, r"^target: expected a finite log-policy"),
        ("nash_mp", {"tol": -1.0}, r"^tol: expected a non-negative"),
        ("nash_mp", {"check_every": 0}, r"^check_every: expected an integer >= 1"),
        ("sgd", {}, r"^method: expected one of"),
    ],
)
def test_bad_solver_arguments_raise_naming_the_argument(method, options, pattern):
    with pytest.raises(ValueError, match=pattern):
        solve_nash(random_game(4, 0.1, seed=0), method, **options)


def test_batched_runs_equal_single_runs_for_every_method():
    games = [
        random_game(12, 0.3, reference=dirichlet_reference(12, seed=1), seed=0),
        cyclic_game(12, 0.05, reference=zipf_reference(12)),
        bradley_terry_game(12, 1.0, reference=dirichlet_reference(12, seed=2), seed=3),
    ]
    batch = stack_games(games)
    options = {method: {} for method in METHODS}
    options["nash_md"] = {"step": 0.5}
    for method, extra in options.items():
        seeds = {"seed": [10, 11, 12]} if method == "approx_nash_mp" else {}
        together = solve_nash(batch, method, tol=0.0, max_iter=30, **extra, **seeds)
        assert together.log_policy.shape == (3, 12) and together.certificate.shape == (3,)
        for b, game in enumerate(games):
            alone = solve_nash(game, method, tol=0.0, max_iter=30, **extra, **({"seed": 10 + b} if seeds else {}))
            np.testing.assert_allclose(together.log_policy[b], alone.log_policy, atol=1e-12, rtol=0, err_msg=method)
            assert together.certificate[b] == pytest.approx(alone.certificate, rel=1e-9, abs=1e-15)
            assert together.queries == alone.queries
    shared = PreferenceGame(games[0].preference, np.stack([g.reference for g in games]), np.array([0.3, 0.05, 1.0]))
    together = solve_nash(shared, "nash_mp", tol=0.0, max_iter=30)  # one P, several mu and beta: P @ pi.T
    for b in range(3):
        alone = solve_nash(shared[b], "nash_mp", tol=0.0, max_iter=30)
        np.testing.assert_allclose(together.log_policy[b], alone.log_policy, atol=1e-12, rtol=0)


def test_a_batch_stops_when_every_game_is_certified():
    batch = stack_games([random_game(16, 1.0, seed=0), random_game(16, 0.02, seed=1)])
    result = solve_nash(batch, "nash_mp", tol=1e-10, max_iter=5000)
    assert result.converged and np.all(result.certificate <= 1e-10)
    fast = solve_nash(batch[0], "nash_mp", tol=1e-10)
    slow = solve_nash(batch[1], "nash_mp", tol=1e-10, max_iter=5000)
    assert result.n_iter == slow.n_iter > fast.n_iter


@pytest.mark.parametrize("method", [m for m in METHODS if m != "approx_nash_mp"])
def test_float32_runs_stay_float32_and_reach_small_kl(method):
    game64 = random_game(50, 1.0, reference=dirichlet_reference(50, seed=4), seed=5)
    star = exact(game64)
    game32 = game64.astype(np.float32)
    result = solve_nash(game32, method, tol=1e-9, max_iter=400, target=star)
    assert result.log_policy.dtype == np.float32
    assert kl(star, result.log_policy) <= 1e-5
    if method != "nash_md":  # the decaying step is sublinear: no certified 1e-9 in 400 iterations
        assert result.converged and kl(star, result.log_policy) <= result.certificate + 1e-12


def test_approximate_nash_mp_reaches_a_noise_floor_that_falls_with_more_samples():
    game = random_game(10, 1.0, reference=dirichlet_reference(10, seed=1), seed=0)
    star = exact(game)
    floors = []
    for n_samples in (250, 1000):
        result = solve_nash(game, "approx_nash_mp", n_samples=n_samples, seed=7, tol=0.0, max_iter=250, target=star)
        floors.append(result.history["kl"][-150:].mean())
    assert floors[1] < floors[0] / 2  # about 1 / n: four times the duels, about a quarter of the KL
    exact_run = solve_nash(game, "nash_mp", tol=0.0, max_iter=250, target=star)
    assert exact_run.history["kl"][-1] < 1e-20 < floors[1] < 1e-3
    repeat = solve_nash(game, "approx_nash_mp", n_samples=250, seed=7, tol=0.0, max_iter=20)
    again = solve_nash(game, "approx_nash_mp", n_samples=250, seed=7, tol=0.0, max_iter=20)
    np.testing.assert_array_equal(repeat.log_policy, again.log_policy)  # seeded


def test_low_rank_game_with_a_hundred_thousand_actions():
    game = low_rank_game(100_000, 8, 0.1, reference=zipf_reference(100_000), seed=0)
    result = solve_nash(game, "nash_mp", tol=1e-8, max_iter=500)
    assert result.converged and result.certificate <= 1e-8
    assert result.policy.shape == (100_000,) and result.policy.sum() == pytest.approx(1, abs=1e-10)


def test_metrics_every_few_iterations_and_a_stopping_callback():
    game = random_game(20, 0.1, seed=2)
    sparse = solve_nash(game, "nash_mp", tol=1e-10, check_every=5)
    certificates = sparse.history["certificate"]
    assert np.all(np.isnan(certificates[np.arange(sparse.n_iter) % 5 != 4]))
    assert sparse.converged and sparse.n_iter % 5 == 0 and certificates[-1] <= 1e-10
    every = solve_nash(game, "nash_mp", tol=1e-10)
    assert every.n_iter <= sparse.n_iter < every.n_iter + 5 and sparse.queries == 2 * sparse.n_iter
    assert sparse.certificate == pytest.approx(kl_certificate(game, sparse.log_policy), rel=1e-12)
    assert sparse.exploitability == pytest.approx(exploitability(game, sparse.policy), rel=1e-9)
    seen = []
    stopped = solve_nash(game, "mmd", tol=1e-10, callback=lambda state: seen.append(state.n_iter) or len(seen) == 3)
    assert not stopped.converged and stopped.n_iter == 3 and "callback" in stopped.message
    assert set(stopped.history) >= {"queries", "certificate", "exploitability", "seconds"}


@pytest.mark.gpu
def test_cupy_runs_give_the_numpy_answers():
    batch = stack_games([random_game(64, 0.1, seed=s) for s in range(8)])
    low_rank = low_rank_game(10_000, 4, 0.1, reference=zipf_reference(10_000), seed=0)
    for game, method in ((batch, "nash_mp"), (batch, "optimistic"), (low_rank, "nash_mp")):
        on_gpu = solve_nash(game, method, tol=1e-10, backend="cupy")
        on_cpu = solve_nash(game, method, tol=1e-10, backend="numpy")
        assert on_gpu.backend == "cupy" and on_gpu.n_iter == on_cpu.n_iter
        np.testing.assert_allclose(on_gpu.log_policy, on_cpu.log_policy, atol=1e-10)
    star = solve_equilibrium(batch, backend="cupy")
    np.testing.assert_allclose(star.log_policy, solve_equilibrium(batch, backend="numpy").log_policy, atol=1e-12)
