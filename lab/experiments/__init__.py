"""The built-in experiments; importing this package registers them (see :mod:`lab.registry`)."""

from lab.experiments import (
    alignment_tradeoff,
    convex_relu_admm,
    convex_relu_robust,
    convex_relu_sgd,
    latent_mdp,
    nash_learning,
    nash_lm,
    rlvr,
    rlvr_frontier,
    sea_regret,
    sgn_lq,
    submodular_rl,
    vr_halpern,
)

__all__ = [
    "alignment_tradeoff",
    "convex_relu_admm",
    "convex_relu_robust",
    "convex_relu_sgd",
    "latent_mdp",
    "nash_learning",
    "nash_lm",
    "rlvr",
    "rlvr_frontier",
    "sea_regret",
    "sgn_lq",
    "submodular_rl",
    "vr_halpern",
]
