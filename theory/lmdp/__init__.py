"""Latent MDPs with the context revealed in hindsight (Zhou, Wang & Du, arXiv 2210.11604, ICML 2023).

:mod:`~theory.lmdp.model`: the :class:`LatentMDP` (total reward per episode <= 1) and its generators;
:mod:`~theory.lmdp.planning`: exact planning over histories with alpha vectors (V*), exact policy evaluation,
the best Markov policy (brute force) and the context oracle;
:mod:`~theory.lmdp.learners`: the episode loop with exact regret, optimistic learners (Bernstein, Hoeffding
bonus), certainty equivalence and posterior sampling.
"""

from theory.lmdp.learners import (
    Episode,
    EpisodeCounts,
    LearnerResult,
    LearningRun,
    ModelBasedLearner,
    PosteriorSampling,
    loglog_slope,
    run_learner,
    sample_episode,
)
from theory.lmdp.model import LatentMDP, deep_sea_lmdp, max_episode_reward, random_lmdp, revealing_lmdp
from theory.lmdp.planning import (
    HistoryPolicy,
    MarkovSolution,
    ReferenceValues,
    TreeSolution,
    best_markov_policy,
    context_optimal_values,
    evaluate_policy,
    history_starts,
    kernel_arrays,
    optimal_policy,
    oracle_value,
    reference_values,
    solve_tree,
)

__all__ = [
    "Episode",
    "EpisodeCounts",
    "HistoryPolicy",
    "LatentMDP",
    "LearnerResult",
    "LearningRun",
    "MarkovSolution",
    "ModelBasedLearner",
    "PosteriorSampling",
    "ReferenceValues",
    "TreeSolution",
    "best_markov_policy",
    "context_optimal_values",
    "deep_sea_lmdp",
    "evaluate_policy",
    "history_starts",
    "kernel_arrays",
    "loglog_slope",
    "max_episode_reward",
    "optimal_policy",
    "oracle_value",
    "random_lmdp",
    "reference_values",
    "revealing_lmdp",
    "run_learner",
    "sample_episode",
    "solve_tree",
]
