"""Preference games of Nash learning from human feedback (tabular): games, equilibria, and self-play solvers.

:mod:`theory.games.preference` defines games (dense, batched, low-rank) and their generators,
:mod:`theory.games.equilibrium` the equilibrium, exploitability, the KL certificate and the ground-truth solver,
:mod:`theory.games.nash` Nash mirror prox (arXiv 2505.19731) and its baselines.

Two neighbouring topics live in their own modules, imported by name (not re-exported here):
:mod:`theory.games.sea` optimistic online mirror descent in the stochastically extended adversarial model
(arXiv 2302.04552), and :mod:`theory.games.halpern` variance-reduced Halpern iteration for finite-sum
monotone inclusions (arXiv 2310.02987) on matrix games such as the annotator population's.
"""

from theory.games.equilibrium import (
    EquilibriumResult,
    EquilibriumSolver,
    best_response_logits,
    duality_gap,
    exploitability,
    kl,
    kl_certificate,
    normalise_logits,
    residual,
    solve_equilibrium,
    span,
    unregularised_exploitability,
)
from theory.games.nash import (
    METHODS,
    ApproximateNashMirrorProx,
    Extragradient,
    NashMD,
    NashMirrorProx,
    NashResult,
    OptimisticMirrorDescent,
    RegularisedMirrorDescent,
    solve_nash,
)
from theory.games.preference import (
    LowRankPreference,
    PreferenceGame,
    annotator_population,
    annotator_population_game,
    bradley_terry_game,
    bradley_terry_matrix,
    cyclic_game,
    dirichlet_reference,
    low_rank_game,
    random_game,
    stack_games,
    uniform_reference,
    zipf_reference,
)

__all__ = [
    "METHODS",
    "ApproximateNashMirrorProx",
    "EquilibriumResult",
    "EquilibriumSolver",
    "Extragradient",
    "LowRankPreference",
    "NashMD",
    "NashMirrorProx",
    "NashResult",
    "OptimisticMirrorDescent",
    "PreferenceGame",
    "RegularisedMirrorDescent",
    "annotator_population",
    "annotator_population_game",
    "best_response_logits",
    "bradley_terry_game",
    "bradley_terry_matrix",
    "cyclic_game",
    "dirichlet_reference",
    "duality_gap",
    "exploitability",
    "kl",
    "kl_certificate",
    "low_rank_game",
    "normalise_logits",
    "random_game",
    "residual",
    "solve_equilibrium",
    "solve_nash",
    "span",
    "stack_games",
    "uniform_reference",
    "unregularised_exploitability",
    "zipf_reference",
]
