"""Submodular RL: set functions against hand counts and closed forms, submodularity on random nested sets, the
SubPO gradient against the exact gradient by enumeration, and SubPO vs modular PG on the paper's coverage grid."""

import numpy as np
import pytest

from theory.submodular import (
    GridWorld,
    ItemCollection,
    PolicyGradient,
    SetFunction,
    SubmodularMDP,
    advantages,
    all_paths,
    check_submodular,
    evaluate_policy,
    greedy_path,
    grid_coverage,
    grid_experiment_design,
    grid_kernel,
    log_likelihood,
    modular_signal,
    myopic_signal,
    optimal_path,
    policy_gradient,
    random_items,
    reward_to_go_signal,
    rollout,
    solve_modular_pg,
    solve_subpo,
    two_rooms,
)
from theory.tabular import TabularMDP


def mask_of(n: int, *elements: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[list(elements)] = True
    return mask


def instances():
    """name -> (grid, objective)."""
    grid, rooms, small = GridWorld(6, 7), two_rooms(), GridWorld(4, 5)
    items_grid = GridWorld(7, 15)
    return {
        "coverage constant": (grid, grid_coverage(grid)),
        "coverage bimodal": (grid, grid_coverage(grid, weights="bimodal")),
        "coverage gp": (grid, grid_coverage(grid, weights="gp", seed=3, footprint=3)),
        "coverage two rooms": (rooms, grid_coverage(rooms)),
        "items": (items_grid, random_items(items_grid, seed=1)),
        "design matern": (grid, grid_experiment_design(grid)),
        "design rbf": (small, grid_experiment_design(small, kind="rbf", lengthscale=1.5, noise=0.1)),
    }


# --- set functions


@pytest.mark.parametrize("name", sorted(instances()))
def test_every_objective_is_monotone_submodular_on_random_nested_sets(name):
    check = check_submodular(instances()[name][1], n_trials=300, seed=7)
    assert check.monotone and check.submodular and check.consistent, check


class SquaredCardinality(SetFunction):
    """|A|^2: monotone and supermodular, so the check must reject it."""

    n_elements = 10

    def value(self, mask):
        return np.atleast_2d(mask).sum(axis=1).astype(float) ** 2

    def marginal_gain(self, mask, element):
        masks = np.atleast_2d(mask)
        return (2.0 * masks.sum(axis=1) + 1.0) * ~masks[np.arange(masks.shape[0]), element]

    def tracker(self, batch_size):
        raise NotImplementedError


def test_the_check_rejects_a_supermodular_function():
    check = check_submodular(SquaredCardinality(), n_trials=50, seed=0)
    assert check.monotone and check.consistent and not check.submodular and check.max_violation >= 2


def test_coverage_values_equal_hand_counts():
    grid = GridWorld(4, 4)
    coverage = grid_coverage(grid)
    assert coverage.footprint.sum(axis=1).reshape(4, 4).tolist() == [[4, 4, 4, 2]] * 3 + [[2, 2, 2, 1]]
    cases = {((0, 0), (0, 1)): 6, ((3, 3),): 1, ((0, 0), (2, 2)): 8, ((0, 0), (1, 1)): 7, ((0, 0), (0, 0)): 4}
    for cells, count in cases.items():
        assert coverage.value(mask_of(16, *(grid.state(*c) for c in cells))) == count
    visited = mask_of(16, grid.state(0, 0))
    assert coverage.marginal_gain(visited, grid.state(1, 1)) == 3
    assert coverage.marginal_gain(visited, grid.state(0, 0)) == 0


def test_bimodal_weights_equal_the_sigmoid_formula():
    grid = GridWorld(3, 3)
    sigmoid = 1 / (1 + np.exp(-1.0))
    coverage = grid_coverage(grid, weights="bimodal")
    expected = [[sigmoid, 0.5, 1 - sigmoid], [0.5, 0.5, 0.5], [1 - sigmoid, 0.5, sigmoid]]
    np.testing.assert_allclose(coverage.weights.reshape(3, 3), expected, atol=1e-15)
    assert coverage.value(mask_of(9, 0)) == pytest.approx(sigmoid + 1.5, abs=1e-15)
    assert coverage.value(mask_of(9, 0, 4)) == pytest.approx(2 * sigmoid + 2.5, abs=1e-15)


def test_item_collection_values_equal_hand_counts():
    membership = np.array([[1, 1, 1, 0, 0], [0, 0, 1, 1, 0]], dtype=bool)  # I_0 = {0, 1, 2}, I_1 = {2, 3}
    items = ItemCollection(membership, demands=[2, 1])
    for elements, value in {(): 0, (2,): 2, (0, 1): 2, (0, 1, 2): 3, (0, 1, 2, 3, 4): 3, (4,): 0, (3,): 1}.items():
        assert items.value(mask_of(5, *elements)) == value
    assert items.marginal_gain(mask_of(5, 0), 2) == 2
    assert items.marginal_gain(mask_of(5, 0, 1, 3), 2) == 0
    assert items.marginal_gain(mask_of(5, 2), 2) == 0  # a repeat adds nothing
    assert items.max_value == 3
    paper = random_items(GridWorld(7, 15), seed=0)
    assert paper.max_value == 21 and paper.membership.sum(axis=1).tolist() == [18, 14, 13, 16, 18, 14]


def test_experiment_design_matches_closed_forms():
    grid = GridWorld(3, 3)
    noise = 0.05
    design = grid_experiment_design(grid, kind="rbf", lengthscale=1.0, noise=noise)
    rho = np.exp(-0.5)  # unit-distance neighbours
    assert design.value(mask_of(9, 0)) == pytest.approx(0.5 * np.log1p(1 / noise), rel=1e-12)
    two = 0.5 * np.log((1 + 1 / noise) ** 2 - (rho / noise) ** 2)
    assert design.value(mask_of(9, 0, 1)) == pytest.approx(two, rel=1e-12)
    posterior = 1 - rho**2 / (1 + noise)
    assert design.posterior_variance(mask_of(9, 0), 1)[0] == pytest.approx(posterior, rel=1e-12)
    assert design.marginal_gain(mask_of(9, 0), 1) == pytest.approx(0.5 * np.log1p(posterior / noise), rel=1e-12)
    assert design.marginal_gain(mask_of(9, 0, 1), 1) == 0.0
    kernel = grid_kernel(grid, kind="matern52", lengthscale=2.0)
    r = np.sqrt(5) / 2
    assert kernel[0, 1] == pytest.approx((1 + r + r**2 / 3) * np.exp(-r), rel=1e-12)


@pytest.mark.parametrize("name", sorted(instances()))
def test_incremental_gains_equal_direct_evaluation(name):
    grid, objective = instances()[name]
    start = int(np.flatnonzero(grid.free)[0])
    mdp = SubmodularMDP(grid.next_state, objective, start, 25)
    trajectories = rollout(mdp, np.zeros(mdp.logits_shape), 64, np.random.default_rng(0))
    visited = np.zeros((64, objective.n_elements), dtype=bool)
    for i in range(mdp.horizon):
        expected_gain = objective.marginal_gain(visited, trajectories.states[:, i])
        np.testing.assert_allclose(trajectories.gains[:, i], expected_gain, atol=1e-10)
        visited[np.arange(64), trajectories.states[:, i]] = True
        np.testing.assert_allclose(trajectories.partial_values[:, i], objective.value(visited), atol=1e-10)


# --- grid dynamics


def test_grid_moves_stay_off_grid_and_at_walls():
    grid = GridWorld(3, 4)
    assert grid.next_state[grid.state(1, 1)].tolist() == [5, 6, 9, 4, 1]  # stay, col+1, row+1, col-1, row-1
    assert grid.next_state[grid.state(0, 0)].tolist() == [0, 1, 4, 0, 0]
    assert grid.next_state[grid.state(2, 3)].tolist() == [11, 11, 11, 10, 7]
    rooms = two_rooms()
    assert rooms.walls.sum() == 5 * 6 and rooms.free.sum() == 98 - 30
    assert rooms.next_state[rooms.state(0, 3), 1] == rooms.state(0, 3)  # wall to the right
    assert rooms.next_state[rooms.state(2, 3), 1] == rooms.state(2, 4)  # the corridor
    assert rooms.next_state[rooms.state(3, 5), 2] == rooms.state(3, 5)  # wall below the corridor
    assert rooms.free[rooms.next_state[rooms.free]].all()  # no move enters a wall
    coverage = grid_coverage(rooms)
    assert coverage.value(mask_of(98, rooms.state(3, 9))) == 3  # (4, 9) is a wall


def test_grid_tabular_model_has_one_hot_transitions_and_modular_rewards():
    grid = GridWorld(3, 3)
    coverage = grid_coverage(grid)
    model = grid.tabular_mdp(coverage.singleton_values(), start=4, n_steps=5)
    assert isinstance(model, TabularMDP) and model.horizon == 5 and model.initial[4] == 1
    np.testing.assert_array_equal(model.transitions.argmax(axis=2), grid.next_state)
    np.testing.assert_array_equal(model.transitions.max(axis=2), 1.0)
    np.testing.assert_array_equal(model.rewards, coverage.singleton_values()[grid.next_state])
    assert coverage.singleton_values().reshape(3, 3).tolist() == [[4, 4, 2], [4, 4, 2], [2, 2, 1]]


# --- policy gradient


def test_learning_signals_on_a_hand_example():
    gains = np.array([[4.0, 1.0, 2.0, 3.0]])  # F({s_0}) = 4, then gains 1, 2, 3
    np.testing.assert_array_equal(reward_to_go_signal(gains), [[6.0, 5.0, 3.0]])
    np.testing.assert_array_equal(myopic_signal(gains), [[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(modular_signal(np.array([[0, 1, 1, 2]]), np.array([5.0, 2.0, 7.0])), [[11, 9, 7]])
    signal = np.array([[1.0, 4.0], [3.0, 4.0]])
    np.testing.assert_allclose(advantages(signal, normalize=False), [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(advantages(signal), [[-np.sqrt(2), 0.0], [np.sqrt(2), 0.0]])
    np.testing.assert_array_equal(advantages(np.full((3, 2), 5.0)), 0.0)


def tiny_problem():
    grid = GridWorld(2, 3)
    return SubmodularMDP(grid.next_state, grid_coverage(grid, weights="bimodal"), 0, 4)


def exact_gradient(mdp, logits, paths, returns, step=1e-6):
    """Central differences of J(theta) = sum_paths pi(path) returns(path)."""
    gradient = np.zeros_like(logits)
    for index in np.ndindex(logits.shape):
        shift = np.zeros_like(logits)
        shift[index] = step
        up = np.exp(log_likelihood(logits + shift, paths)) @ returns
        down = np.exp(log_likelihood(logits - shift, paths)) @ returns
        gradient[index] = (up - down) / (2 * step)
    return gradient


def expected_estimate(logits, paths, signal):
    """E over paths of the single-path estimator sum_i w_i grad log pi(a_i | s_i, i)."""
    probability = np.exp(log_likelihood(logits, paths))
    assert probability.sum() == pytest.approx(1.0, abs=1e-12)
    return policy_gradient(logits, paths, signal * probability[:, None] * len(probability))


def test_subpo_gradient_is_unbiased_and_the_myopic_one_is_not():
    mdp = tiny_problem()
    logits = np.random.default_rng(0).normal(size=mdp.logits_shape)
    paths = all_paths(mdp)
    assert len(paths.values) == 5**3
    exact = exact_gradient(mdp, logits, paths, paths.values)
    subpo = expected_estimate(logits, paths, reward_to_go_signal(paths.gains))
    np.testing.assert_allclose(subpo, exact, atol=1e-8)
    myopic = expected_estimate(logits, paths, myopic_signal(paths.gains))
    assert np.abs(myopic - exact).max() > 0.01
    state_rewards = mdp.objective.singleton_values()
    modular_return = state_rewards[paths.states[:, 1:]].sum(axis=1)
    modular = expected_estimate(logits, paths, modular_signal(paths.states, state_rewards))
    np.testing.assert_allclose(modular, exact_gradient(mdp, logits, paths, modular_return), atol=1e-8)


def test_subpo_finds_the_optimal_path_of_a_small_grid():
    grid = GridWorld(4, 4)
    mdp = SubmodularMDP(grid.next_state, grid_coverage(grid, weights="bimodal"), grid.state(1, 1), 7)
    optimum = optimal_path(mdp).values[0]
    result = solve_subpo(mdp, max_iter=150, learning_rate=0.2, n_eval=200, seed=1)
    assert result.evaluation.greedy_value == pytest.approx(optimum, abs=1e-12)
    assert greedy_path(mdp).values[0] <= optimum + 1e-12
    assert result.history["mean_objective"].shape == (result.n_iter,)


def test_solve_subpo_is_reproducible_and_stops_on_request():
    mdp = tiny_problem()
    first, second = (solve_subpo(mdp, max_iter=20, seed=4) for _ in range(2))
    np.testing.assert_array_equal(first.logits, second.logits)
    stopped = solve_subpo(mdp, max_iter=20, seed=4, callback=lambda state: state.n_iter == 3)
    assert stopped.n_iter == 3 and not stopped.converged and "callback" in stopped.message


def test_bad_inputs_name_the_argument():
    mdp = tiny_problem()
    with pytest.raises(ValueError, match="^signal:"):
        PolicyGradient(mdp, signal="additive")
    with pytest.raises(ValueError, match="^start:"):
        SubmodularMDP(mdp.next_state, mdp.objective, 6, 4)
    with pytest.raises(ValueError, match="^horizon:"):
        SubmodularMDP(mdp.next_state, mdp.objective, 0, 1)
    with pytest.raises(TypeError, match="^mask:"):
        mdp.objective.value(np.zeros(6))
    with pytest.raises(ValueError, match="^logits:"):
        rollout(mdp, np.zeros((2, 6, 5)), 4, np.random.default_rng(0))


# --- the paper's coverage benchmark: 12 x 12, 2 x 2 footprint, H = 30, start (1, 4), B = 256, 300 iterations


def coverage_benchmark(weights):
    grid = GridWorld(12, 12)
    return SubmodularMDP(grid.next_state, grid_coverage(grid, weights=weights), grid.state(1, 4), 30)


def test_subpo_nearly_covers_the_constant_grid_and_doubles_modular_pg():
    mdp = coverage_benchmark("constant")
    ceiling = 2 * (mdp.horizon + 1)  # 4 cells at s_0, at most 2 new per move
    assert greedy_path(mdp).values[0] == ceiling  # the bound is attained
    subpo = solve_subpo(mdp, seed=0).evaluation
    myopic = solve_subpo(mdp, myopic=True, seed=0).evaluation
    modular = solve_modular_pg(mdp, seed=0).evaluation
    uniform = evaluate_policy(mdp, n_samples=1000, seed=0)
    assert 0.85 * ceiling <= subpo.mean <= ceiling
    assert 0.85 * ceiling <= myopic.mean <= ceiling
    assert subpo.mean >= 2 * modular.mean
    assert modular.mean <= 1.1 * uniform.mean  # modular PG parks on 4-cell footprints: no better than random


def test_subpo_triples_modular_pg_on_bimodal_weights():
    mdp = coverage_benchmark("bimodal")
    subpo = solve_subpo(mdp, seed=0).evaluation
    modular = solve_modular_pg(mdp, seed=0).evaluation
    assert subpo.mean >= 3 * modular.mean
