"""Submodular RL: maximise E[F(tau)] for a monotone submodular F of the visited states (Prajapat, Mutny,
Zeilinger, Krause, "Submodular Reinforcement Learning", ICLR 2024, arXiv 2307.13372).

:mod:`theory.submodular.grid` builds deterministic grid worlds (and the two-rooms layout);
:mod:`theory.submodular.objectives` the set functions (coverage, item collection, Bayesian experiment design) and
a submodularity check; :mod:`theory.submodular.mdp` the submodular MDP, batched rollouts, policy evaluation and
exact references; :mod:`theory.submodular.policy_gradient` SubPO (reward-to-go and myopic) and modular PG.
"""

from theory.submodular.grid import ACTION_NAMES, GridWorld, two_rooms
from theory.submodular.mdp import (
    PolicyEvaluation,
    SubmodularMDP,
    Trajectories,
    all_paths,
    evaluate_policy,
    greedy_path,
    log_likelihood,
    optimal_path,
    rollout,
    softmax_policy,
)
from theory.submodular.objectives import (
    Coverage,
    ExperimentDesign,
    GainTracker,
    ItemCollection,
    SetFunction,
    SubmodularityCheck,
    bimodal_weights,
    check_submodular,
    gp_weights,
    grid_coverage,
    grid_experiment_design,
    grid_kernel,
    random_items,
)
from theory.submodular.policy_gradient import (
    PolicyGradient,
    PolicyGradientResult,
    advantages,
    modular_signal,
    myopic_signal,
    policy_gradient,
    reward_to_go_signal,
    solve_modular_pg,
    solve_subpo,
)

__all__ = [
    "ACTION_NAMES",
    "Coverage",
    "ExperimentDesign",
    "GainTracker",
    "GridWorld",
    "ItemCollection",
    "PolicyEvaluation",
    "PolicyGradient",
    "PolicyGradientResult",
    "SetFunction",
    "SubmodularMDP",
    "SubmodularityCheck",
    "Trajectories",
    "advantages",
    "all_paths",
    "bimodal_weights",
    "check_submodular",
    "evaluate_policy",
    "gp_weights",
    "greedy_path",
    "grid_coverage",
    "grid_experiment_design",
    "grid_kernel",
    "log_likelihood",
    "modular_signal",
    "myopic_signal",
    "optimal_path",
    "policy_gradient",
    "random_items",
    "reward_to_go_signal",
    "rollout",
    "softmax_policy",
    "solve_modular_pg",
    "solve_subpo",
    "two_rooms",
]
