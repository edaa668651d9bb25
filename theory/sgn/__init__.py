"""Small-Gain Nash certificates for N-player differentiable games (arXiv 2512.06791).

:mod:`theory.sgn.games` defines games and regions, :mod:`theory.sgn.certificate` the bounds,
weights, margins, step sizes and timescale band.
"""

from theory.sgn.certificate import (
    GameBounds,
    SGNCertificate,
    certify,
    estimate_bounds,
    gain_matrix,
    margin,
    metric_lipschitz,
    optimise_weights,
    perron_weights,
    small_gain_radius,
    timescale_band,
    two_player_optimum,
)
from theory.sgn.games import Ball, Box, DifferentiableGame, QuadraticGame

__all__ = [
    "Ball",
    "Box",
    "DifferentiableGame",
    "GameBounds",
    "QuadraticGame",
    "SGNCertificate",
    "certify",
    "estimate_bounds",
    "gain_matrix",
    "margin",
    "metric_lipschitz",
    "optimise_weights",
    "perron_weights",
    "small_gain_radius",
    "timescale_band",
    "two_player_optimum",
]
