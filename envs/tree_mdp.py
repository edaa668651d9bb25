"""ROVER's tree MDP as a gymnasium environment (theory.rover_tree; He et al. 2025, arXiv 2509.24981).

An episode walks down a complete A-ary tree of depth H: the observation is the current node (``Discrete`` over all
nodes, numbered breadth-first, root 0, child a of s is A s + 1 + a), each action picks a child, and after H steps
the episode terminates at a leaf l with reward r(l) (0 on every earlier step) and ``info["leaf"]`` = l.
Transitions are deterministic; the only randomness is the tree itself.

The tree: a fixed :class:`~theory.rover_tree.RoverTree` given as ``tree``, or drawn from ``self.np_random`` (leaf
rewards Bernoulli(``success_probability``) for ``reward_distribution="binary"``, U[0, 1) for ``"uniform"``) on
every seeded ``reset(seed=...)`` and on the first reset, and kept across unseeded resets;
``redraw_every_episode=True`` draws a new one on every reset. ``env.unwrapped.tree`` is the current tree, with its
exact Q_u, Q* and TabularMDP.
"""

from __future__ import annotations

import gymnasium as gym
from gymnasium import spaces

from theory.rover_tree import RoverTree, nodes_above_depth, random_tree


class RoverTreeEnv(gym.Env):
    """Episodes on ``tree``, or on random trees of ``n_actions`` A and ``depth`` H (defaults A = 2, H = 4).

    With ``tree`` given, ``n_actions`` and ``depth`` may be omitted (they are read from it) and the draw
    arguments are unused.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        tree: RoverTree | None = None,
        *,
        n_actions: int | None = None,
        depth: int | None = None,
        reward_distribution: str = "binary",
        success_probability: float = 0.3,
        redraw_every_episode: bool = False,
    ) -> None:
        if tree is not None:
            if not isinstance(tree, RoverTree):
                raise TypeError(f"tree: expected a theory.rover_tree.RoverTree or None, got {type(tree).__name__}")
            if redraw_every_episode:
                raise ValueError("redraw_every_episode: a fixed tree is never redrawn; pass tree=None to draw trees")
            for name, given, actual in (("n_actions", n_actions, tree.n_actions), ("depth", depth, tree.depth)):
                if given is not None and given != actual:
                    raise ValueError(f"{name}: expected {actual} (that of the given tree) or None, got {given}")
            n_actions, depth = tree.n_actions, tree.depth
        else:
            n_actions = 2 if n_actions is None else n_actions
            depth = 4 if depth is None else depth
            # Validates every draw argument now rather than at the first reset.
            random_tree(
                n_actions,
                depth,
                seed=0,
                reward_distribution=reward_distribution,
                success_probability=success_probability,
            )
        self.n_actions, self.depth = int(n_actions), int(depth)
        self.reward_distribution, self.success_probability = reward_distribution, success_probability
        self.redraw_every_episode = redraw_every_episode
        self._fixed_tree = tree is not None
        self._tree = tree
        self._first_leaf = nodes_above_depth(self.n_actions, self.depth)
        self.observation_space = spaces.Discrete(nodes_above_depth(self.n_actions, self.depth + 1))
        self.action_space = spaces.Discrete(self.n_actions)
        self._node: int | None = None

    @property
    def tree(self) -> RoverTree:
        """The tree of the current episode (a drawn one exists from the first reset on)."""
        if self._tree is None:
            raise RuntimeError("tree: no tree has been drawn yet; call reset() first")
        return self._tree

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if not self._fixed_tree and (self._tree is None or seed is not None or self.redraw_every_episode):
            self._tree = random_tree(
                self.n_actions,
                self.depth,
                seed=self.np_random,
                reward_distribution=self.reward_distribution,
                success_probability=self.success_probability,
            )
        self._node = 0
        return 0, {}

    def step(self, action):
        if self._node is None:
            raise RuntimeError("step: call reset() before the first step")
        if self._node >= self._first_leaf:
            raise RuntimeError(f"step: the episode ended at a leaf after H = {self.depth} steps; call reset()")
        if not self.action_space.contains(action):
            raise ValueError(f"action: expected an int in [0, {self.n_actions}), got {action!r}")
        self._node = self.n_actions * self._node + 1 + int(action)
        if self._node < self._first_leaf:
            return self._node, 0.0, False, False, {}
        leaf = self._node - self._first_leaf
        return self._node, float(self._tree.leaf_rewards[leaf]), True, False, {"leaf": leaf}


__all__ = ["RoverTreeEnv"]
