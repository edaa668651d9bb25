"""Discretised game dynamics and their measured contraction in the weighted metric.

The flow x' = -F(x) is stepped by projected Euler, x+ = P(x - h F(x)), or by classical RK4
followed by the projection. Running two trajectories side by side and taking the ratio
||x_{k+1} - y_{k+1}||_M / ||x_k - y_k||_M measures the contraction factor per step that
:meth:`theory.sgn.certificate.SGNCertificate.euler_factor` certifies. Projection onto a box
is the weighted-metric projection for any diagonal M, so it is non-expansive there.
"""

from __future__ import annotations

import numpy as np

from theory.sgn.games import DifferentiableGame, Region

METHODS = ("euler", "rk4")


def weighted_norm(v: np.ndarray, weights, blocks) -> np.ndarray:
    """||v||_M = sqrt(sum_i w_i ||v_i||^2) along the last axis, M = diag(w_i I_{d_i})."""
    scale = np.repeat(np.asarray(weights, dtype=float), blocks)
    return np.sqrt(np.sum(scale * np.asarray(v) ** 2, axis=-1))


def simulate(
    game: DifferentiableGame,
    x0,
    *,
    step: float,
    n_steps: int,
    method: str = "euler",
    region: Region | None = None,
) -> np.ndarray:
    """States x_0..x_n (shape (n_steps + 1, dim)) of projected Euler or RK4 with step ``step``."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if not (np.isfinite(step) and step > 0):
        raise ValueError(f"step: expected a positive number, got {step!r}")
    if not (isinstance(n_steps, int) and n_steps >= 1):
        raise ValueError(f"n_steps: expected a positive integer, got {n_steps!r}")
    x = np.asarray(x0, dtype=float)
    if x.shape != (game.dim,):
        raise ValueError(f"x0: expected shape ({game.dim},), got {x.shape}")
    project = region.project if region is not None else (lambda z: z)
    field = game.pseudo_gradient
    states = np.empty((n_steps + 1, game.dim))
    states[0] = x = project(x)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(1, n_steps + 1):
            if method == "euler":
                x = project(x - step * field(x))
            else:
                k1 = field(x)
                k2 = field(x - 0.5 * step * k1)
                k3 = field(x - 0.5 * step * k2)
                k4 = field(x - step * k3)
                x = project(x - step / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4))
            states[k] = x
            if not np.all(np.isfinite(x)):
                states[k:] = np.nan
                break
    return states


def contraction_factors(
    game: DifferentiableGame,
    x0,
    y0,
    weights,
    *,
    step: float,
    n_steps: int,
    method: str = "euler",
    region: Region | None = None,
) -> np.ndarray:
    """Per-step ratios ||x_{k+1} - y_{k+1}||_M / ||x_k - y_k||_M of two trajectories (NaN once they diverge)."""
    x = simulate(game, x0, step=step, n_steps=n_steps, method=method, region=region)
    y = simulate(game, y0, step=step, n_steps=n_steps, method=method, region=region)
    distances = weighted_norm(x - y, weights, game.blocks)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = distances[1:] / distances[:-1]
    ratios[distances[:-1] <= 1e-300] = np.nan  # the trajectories met: no ratio left to measure
    return ratios
