"""Shared exact tools for tabular MDPs: the model, exact planning and evaluation, Monte-Carlo rollouts.

:mod:`theory.tabular.mdp` defines :class:`TabularMDP`; :mod:`theory.tabular.planning` backward induction
(single and batched, numba or numpy), exact policy evaluation, value and policy iteration;
:mod:`theory.tabular.rollouts` Monte-Carlo episodes (numba or numpy).
"""

from theory.tabular.mdp import TabularMDP
from theory.tabular.planning import (
    FiniteHorizonSolution,
    PolicyEvaluation,
    PolicyIteration,
    PolicyIterationResult,
    ValueIteration,
    ValueIterationResult,
    backward_induction,
    backward_induction_batch,
    evaluate_policy,
    policy_iteration,
    policy_probabilities,
    value_iteration,
)
from theory.tabular.rollouts import Rollouts, rollouts

__all__ = [
    "FiniteHorizonSolution",
    "PolicyEvaluation",
    "PolicyIteration",
    "PolicyIterationResult",
    "Rollouts",
    "TabularMDP",
    "ValueIteration",
    "ValueIterationResult",
    "backward_induction",
    "backward_induction_batch",
    "evaluate_policy",
    "policy_iteration",
    "policy_probabilities",
    "rollouts",
    "value_iteration",
]
