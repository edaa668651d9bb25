"""A latent MDP as a gymnasium environment, the context revealed in hindsight (theory.lmdp; arXiv 2210.11604).

``reset(seed=)`` draws the hidden context m ~ w and s_0 ~ nu_m from ``self.np_random``; each ``step(a)`` pays
r_{m,h}(s, a) and moves to s' ~ P_m(. | s, a). The observation is (h, s), the step index and the state (rewards
may depend on the step, so (h, s) is the Markov state of each context's MDP). The episode terminates after H
steps, and only the last step's ``info`` carries ``"context"``. ``env.unwrapped.model`` is the
:class:`~theory.lmdp.model.LatentMDP`, for exact values (:mod:`theory.lmdp.planning`).
"""

from __future__ import annotations

import gymnasium as gym
from gymnasium import spaces

from theory.lmdp.model import LatentMDP, revealing_lmdp


class LatentMDPEnv(gym.Env):
    """Episodes of ``lmdp`` (default :func:`~theory.lmdp.model.revealing_lmdp`, where the past reveals the
    context): observation (h, s) in Discrete(H + 1) x Discrete(S), action Discrete(A)."""

    metadata = {"render_modes": []}

    def __init__(self, lmdp: LatentMDP | None = None) -> None:
        if lmdp is None:
            lmdp = revealing_lmdp()
        if not isinstance(lmdp, LatentMDP):
            raise TypeError(f"lmdp: expected a theory.lmdp.LatentMDP or None, got {type(lmdp).__name__}")
        self.model = lmdp
        self.observation_space = spaces.Tuple((spaces.Discrete(lmdp.horizon + 1), spaces.Discrete(lmdp.n_states)))
        self.action_space = spaces.Discrete(lmdp.n_actions)
        self._context: int | None = None
        self._step = 0
        self._state = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        u_context, u_start = self.np_random.random(2)
        self._context = self.model.draw_context(u_context)
        self._state = self.model.draw_start(self._context, u_start)
        self._step = 0
        return (0, self._state), {}

    def step(self, action):
        if self._context is None:
            raise RuntimeError("step: call reset() before the first step")
        if self._step >= self.model.horizon:
            raise RuntimeError(f"step: the episode ended after H = {self.model.horizon} steps; call reset()")
        if not self.action_space.contains(action):
            raise ValueError(f"action: expected an int in [0, {self.model.n_actions}), got {action!r}")
        action = int(action)
        m, h, s = self._context, self._step, self._state
        reward = float(self.model.step_rewards[m, h, s, action])
        self._state = self.model.draw_next(m, s, action, self.np_random.random())
        self._step += 1
        terminated = self._step == self.model.horizon
        info = {"context": m} if terminated else {}
        return (self._step, self._state), reward, terminated, False, info


__all__ = ["LatentMDPEnv"]
