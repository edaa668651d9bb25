"""Deterministic grid worlds of submodular RL (Prajapat et al., "Submodular Reinforcement Learning", ICLR 2024).

Cells are states ``s = row * cols + col``. Five actions: 0 stay, 1 col+1, 2 row+1, 3 col-1, 4 row-1; a move off
the grid or into a wall leaves the agent where it is. Wall cells stay in the state space (so a state index is a
cell index) but nothing can enter them. :func:`two_rooms` builds the paper's two-rooms layout: two rooms joined by
a two-cell-wide corridor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from theory.tabular import TabularMDP

ACTION_OFFSETS = np.array([(0, 0), (0, 1), (1, 0), (0, -1), (-1, 0)])
"""(row, col) displacement of actions 0 stay, 1 col+1, 2 row+1, 3 col-1, 4 row-1."""
ACTION_NAMES = ("stay", "right", "down", "left", "up")


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name}: expected a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value}")
    return int(value)


@dataclass(frozen=True)
class GridWorld:
    """A ``rows`` x ``cols`` grid with optional ``walls`` (bool (rows, cols), True = blocked)."""

    rows: int
    cols: int
    walls: np.ndarray | None = None
    next_state: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rows, cols = _positive_int(self.rows, "rows"), _positive_int(self.cols, "cols")
        walls = np.zeros((rows, cols), dtype=bool) if self.walls is None else np.asarray(self.walls)
        if walls.shape != (rows, cols) or walls.dtype != bool:
            raise ValueError(f"walls: expected a bool array of shape ({rows}, {cols}), got {walls.dtype} {walls.shape}")
        if walls.all():
            raise ValueError("walls: expected at least one free cell")
        walls = walls.copy()
        walls.flags.writeable = False
        row, col = np.divmod(np.arange(rows * cols), cols)
        target_row = row[:, None] + ACTION_OFFSETS[None, :, 0]
        target_col = col[:, None] + ACTION_OFFSETS[None, :, 1]
        inside = (target_row >= 0) & (target_row < rows) & (target_col >= 0) & (target_col < cols)
        target = np.where(inside, target_row * cols + target_col, 0)
        allowed = inside & ~walls.reshape(-1)[target]
        next_state = np.where(allowed, target, np.arange(rows * cols)[:, None])
        next_state.flags.writeable = False
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "cols", cols)
        object.__setattr__(self, "walls", walls)
        object.__setattr__(self, "next_state", next_state)

    @property
    def n_states(self) -> int:
        return self.rows * self.cols

    @property
    def n_actions(self) -> int:
        return len(ACTION_OFFSETS)

    @property
    def free(self) -> np.ndarray:
        """Bool (S,): True for cells that are not walls."""
        return ~self.walls.reshape(-1)

    def state(self, row: int, col: int) -> int:
        """The index of cell (row, col)."""
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise ValueError(f"row, col: expected a cell of the {self.rows}x{self.cols} grid, got ({row}, {col})")
        if self.walls[row, col]:
            raise ValueError(f"row, col: cell ({row}, {col}) is a wall")
        return int(row * self.cols + col)

    def cell(self, state: int) -> tuple[int, int]:
        """(row, col) of ``state``."""
        row, col = divmod(int(state), self.cols)
        return row, col

    def coordinates(self) -> np.ndarray:
        """(S, 2) float array of every state's (row, col)."""
        return np.stack(np.divmod(np.arange(self.n_states), self.cols), axis=1).astype(float)

    def footprint(self, size: int = 2) -> np.ndarray:
        """Bool (S, S) incidence: ``[s, n]`` is True when state s covers cell n.

        cov(s) is the ``size`` x ``size`` block whose top-left cell is s (the paper's 2 x 2 default: s, right, down,
        down-right), clipped to the grid and without wall cells.
        """
        size = _positive_int(size, "size")
        row, col = np.divmod(np.arange(self.n_states), self.cols)
        drow = row[None, :] - row[:, None]
        dcol = col[None, :] - col[:, None]
        covers = (drow >= 0) & (drow < size) & (dcol >= 0) & (dcol < size)
        return covers & self.free[None, :]

    def transition_tensor(self) -> np.ndarray:
        """The one-hot (S, A, S) transition probabilities of :attr:`next_state`."""
        transitions = np.zeros((self.n_states, self.n_actions, self.n_states))
        np.put_along_axis(transitions, self.next_state[:, :, None], 1.0, axis=2)
        return transitions

    def tabular_mdp(self, state_rewards, *, start: int | None, n_steps: int) -> TabularMDP:
        """The dynamics as a :class:`TabularMDP` with ``n_steps`` decisions from ``start`` (None: a uniform free cell).

        ``rewards[s, a] = state_rewards[next_state[s, a]]``: the reward of a step is paid for the state it reaches,
        as the submodular environments pay the marginal gain of the state reached.
        """
        state_rewards = np.asarray(state_rewards, dtype=float)
        if state_rewards.shape != (self.n_states,):
            raise ValueError(f"state_rewards: expected shape ({self.n_states},), got {state_rewards.shape}")
        if start is None:
            initial = self.free / self.free.sum()
        else:
            if not (0 <= start < self.n_states and self.free[start]):
                raise ValueError(f"start: expected the index of a free cell in [0, {self.n_states}), got {start!r}")
            initial = np.zeros(self.n_states)
            initial[start] = 1.0
        return TabularMDP(self.transition_tensor(), state_rewards[self.next_state], initial, horizon=n_steps)


def two_rooms(rows: int = 7, cols: int = 14, *, wall_cols: tuple[int, int] = (4, 10), door_rows=(2, 3)) -> GridWorld:
    """The two-rooms layout (7 x 14 in the paper): columns ``wall_cols[0]`` to ``wall_cols[1] - 1`` are wall except in
    ``door_rows``, which form the corridor between the left and the right room."""
    walls = np.zeros((rows, cols), dtype=bool)
    start, stop = wall_cols
    if not 0 < start < stop < cols:
        raise ValueError(f"wall_cols: expected 0 < start < stop < cols = {cols}, got {wall_cols!r}")
    door_rows = list(door_rows)
    if not door_rows or not all(0 <= r < rows for r in door_rows):
        raise ValueError(f"door_rows: expected row indices in [0, {rows}), got {door_rows!r}")
    walls[:, start:stop] = True
    walls[door_rows, start:stop] = False
    return GridWorld(rows, cols, walls)
