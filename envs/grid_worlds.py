"""Grid worlds with a submodular objective on the visited cells (Prajapat et al., "Submodular Reinforcement
Learning", ICLR 2024): coverage, item collection, Bayesian experiment design, and coverage of two rooms.

An episode is a trajectory tau = (s_0, ..., s_{H-1}) of H cells: reset returns s_0, then H - 1 steps (the last
one truncates). The observation is the cell (``Discrete(S)``, s = row * cols + col); the step reward is the
marginal gain F(s_{t+1} | tau_{0:t}), so the rewards plus F({s_0}) (``info["marginal_gain"]`` at reset) sum to
F(tau). ``info`` carries ``time`` (t), ``F`` (F(tau_{0:t})) and ``marginal_gain``; :meth:`objective_value` and
:attr:`visited` read the same. The reward depends on the history through the visited set, so the observation is
not a Markov state of the reward; the *dynamics* are Markov, and :meth:`tabular_model` gives them exactly as a
:class:`theory.tabular.TabularMDP` whose rewards are the modular r(s, a) = F({s'}) of the cell s' reached (what
standard RL would maximise). :meth:`submodular_mdp` gives the exact instance to :mod:`theory.submodular` solvers.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from theory.submodular.grid import GridWorld, two_rooms
from theory.submodular.mdp import SubmodularMDP
from theory.submodular.objectives import SetFunction, grid_coverage, grid_experiment_design, random_items
from theory.tabular import TabularMDP


class SubmodularGridEnv(gym.Env):
    """A deterministic grid world paying marginal gains of ``objective`` over ``horizon`` H visited cells.

    ``start`` is a (row, col) cell, or None for a uniform free cell drawn from ``np_random`` at each reset.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        grid: GridWorld,
        objective: SetFunction,
        *,
        horizon: int,
        start: tuple[int, int] | None,
        render_mode: str | None = None,
    ) -> None:
        if not isinstance(grid, GridWorld):
            raise TypeError(f"grid: expected a GridWorld, got {type(grid).__name__}")
        if not isinstance(objective, SetFunction) or objective.n_elements != grid.n_states:
            raise ValueError(f"objective: expected a SetFunction on the {grid.n_states} cells")
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 2:
            raise ValueError(f"horizon: expected an integer >= 2 (cells per episode), got {horizon!r}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(
                f"render_mode: expected None or one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.grid, self.objective, self.horizon = grid, objective, horizon
        self.start = None if start is None else grid.state(*start)
        self.render_mode = render_mode
        self.observation_space = spaces.Discrete(grid.n_states)
        self.action_space = spaces.Discrete(grid.n_actions)
        self._state = self.start if self.start is not None else int(np.flatnonzero(grid.free)[0])
        self._time = 0
        self._tracker = objective.tracker(1)

    @property
    def visited(self) -> np.ndarray:
        """Bool (S,): the cells of the episode so far."""
        return self._tracker.visited[0].copy()

    @property
    def time(self) -> int:
        return self._time

    def objective_value(self) -> float:
        """F(tau_{0:t}) of the episode so far."""
        return float(self._tracker.value[0])

    def _visit(self, state: int) -> float:
        self._state = state
        return float(self._tracker.add(np.array([state]))[0])

    def _info(self, gain: float) -> dict:
        return {"time": self._time, "F": self.objective_value(), "marginal_gain": gain}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        start = self.start
        if start is None:
            start = int(self.np_random.choice(np.flatnonzero(self.grid.free)))
        self._time = 0
        self._tracker = self.objective.tracker(1)
        gain = self._visit(start)
        return start, self._info(gain)

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action: expected an integer in [0, {self.action_space.n}), got {action!r}")
        if self._time >= self.horizon - 1:
            raise RuntimeError("step: the episode is over (H cells visited); call reset()")
        self._time += 1
        gain = self._visit(int(self.grid.next_state[self._state, int(action)]))
        truncated = self._time == self.horizon - 1
        return self._state, gain, False, truncated, self._info(gain)

    def render(self):
        """ANSI text: ``A`` agent, ``#`` wall, ``*`` visited, ``.`` free."""
        if self.render_mode != "ansi":
            return None
        cells = np.where(self.grid.walls.reshape(-1), "#", np.where(self._tracker.visited[0], "*", "."))
        cells[self._state] = "A"
        return "\n".join("".join(row) for row in cells.reshape(self.grid.rows, self.grid.cols)) + "\n"

    def tabular_model(self) -> TabularMDP:
        """The exact Markov dynamics with H - 1 decisions and modular rewards r(s, a) = F({s'}) (module docstring);
        the start distribution is uniform over the free cells when ``start`` is None."""
        return self.grid.tabular_mdp(self.objective.singleton_values(), start=self.start, n_steps=self.horizon - 1)

    def submodular_mdp(self) -> SubmodularMDP:
        """The same instance for :func:`theory.submodular.solve_subpo` (needs a fixed start)."""
        if self.start is None:
            raise ValueError("start: a SubmodularMDP needs a fixed start cell; this environment draws it at reset")
        return SubmodularMDP(self.grid.next_state, self.objective, self.start, self.horizon)


class CoverageGridEnv(SubmodularGridEnv):
    """Coverage F(tau) = sum of w over the cells covered by a ``footprint`` x ``footprint`` block at each visited
    cell; ``weights`` "constant", "bimodal", "gp" (a GP sample drawn with ``instance_seed``) or an (S,) array.
    Defaults: the 12 x 12, H = 30, start (1, 4) benchmark (constant weights: F <= 2 (H + 1) = 62)."""

    def __init__(
        self,
        rows: int = 12,
        cols: int = 12,
        *,
        horizon: int = 30,
        footprint: int = 2,
        weights="constant",
        start: tuple[int, int] | None = (1, 4),
        instance_seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        grid = GridWorld(rows, cols)
        objective = grid_coverage(grid, footprint=footprint, weights=weights, seed=instance_seed)
        super().__init__(grid, objective, horizon=horizon, start=start, render_mode=render_mode)


class ItemCollectionEnv(SubmodularGridEnv):
    """Item collection F(tau) = sum_k min(|I_k n tau|, D_k) on the paper's 7 x 15 grid, H = 40: ``counts[k]``
    items of type k on random cells (``instance_seed``), demand ``demands[k]`` (max F = 21 by default)."""

    def __init__(
        self,
        rows: int = 7,
        cols: int = 15,
        *,
        horizon: int = 40,
        counts=(18, 14, 13, 16, 18, 14),
        demands=(3, 2, 3, 4, 6, 3),
        start: tuple[int, int] | None = (2, 4),
        instance_seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        grid = GridWorld(rows, cols)
        objective = random_items(grid, counts=counts, demands=demands, seed=instance_seed)
        super().__init__(grid, objective, horizon=horizon, start=start, render_mode=render_mode)


class ExperimentDesignEnv(SubmodularGridEnv):
    """D-optimal experiment design F(tau) = 1/2 logdet(I + K_tau / noise) with a GP kernel on the cells
    (:func:`theory.submodular.objectives.grid_kernel`); each visited cell is one noisy measurement."""

    def __init__(
        self,
        rows: int = 12,
        cols: int = 12,
        *,
        horizon: int = 30,
        kernel: str = "matern52",
        lengthscale: float = 2.0,
        noise: float = 1e-3,
        start: tuple[int, int] | None = (1, 4),
        render_mode: str | None = None,
    ) -> None:
        grid = GridWorld(rows, cols)
        objective = grid_experiment_design(grid, kind=kernel, lengthscale=lengthscale, noise=noise)
        super().__init__(grid, objective, horizon=horizon, start=start, render_mode=render_mode)


class TwoRoomsCoverageEnv(SubmodularGridEnv):
    """Constant-weight coverage (2 x 2 footprint, walls uncovered) of the 7 x 14 two-rooms layout
    (:func:`theory.submodular.grid.two_rooms`), H = 40, starting in the corridor at (2, 6)."""

    def __init__(
        self,
        *,
        horizon: int = 40,
        footprint: int = 2,
        start: tuple[int, int] | None = (2, 6),
        render_mode: str | None = None,
    ) -> None:
        grid = two_rooms()
        objective = grid_coverage(grid, footprint=footprint, weights="constant")
        super().__init__(grid, objective, horizon=horizon, start=start, render_mode=render_mode)
