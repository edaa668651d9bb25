"""A verifiable preference oracle over Countdown-lite completions: the preference games of Nash learning on the LM.

Nash learning from human feedback (Munos et al., arXiv 2312.00886; Tiapkin et al., "Accelerating Nash Learning from
Human Feedback via Mirror Prox", arXiv 2505.19731 v1) needs P(y > y'), the probability that completion y is
preferred to y' for the same prompt. Here it is computed by parsing, never by a model, and never by ``eval``:

1. The answer set of a prompt ``"a b c=TT?"`` (:func:`answer_set`): every well-formed answer ``"d o d o d"`` over a
   permutation of the prompt's digits with operators in ``+ - *`` (the 54 templates of
   :data:`lab.rlvr.tasks.COUNTDOWN_TEMPLATES`, deduplicated when digits repeat), sorted, then one class
   :data:`OTHER` for every other string (garbage, wrong digits, missing EOS, ...). A completion's class is
   :func:`answer_index`; its value v(y) is :func:`lab.rlvr.tasks.evaluate` of the parsed answer.
2. Criteria (:func:`criteria`): costs, lower is better, one row per criterion and one column per answer; OTHER costs
   +inf under every criterion, so a well-formed answer always beats it and two OTHERs tie.

   - ``distance`` |v(y) - TT| (a grader);
   - ``operator_cost``: + costs 0, - costs 1, * costs 2, summed over the two operators (a minimalist);
   - ``inversions``: pairs of digits written in decreasing order, 0 to 3 (a tidy reader: smallest first).
3. Kinds of preference (:data:`KINDS`), from the criteria C used:

       P(y > y') = 1 if V(y, y') > 0,  1/2 if V(y, y') = 0,  0 if V(y, y') < 0,
       V(y, y') = #{c in C: c(y) < c(y')} - #{c in C: c(y) > c(y')}   (votes; a tie under c abstains)

   - ``"closer"``: C = {distance}: the answer closer to the target wins, ties 1/2. P = 1[s_y < s_y'] + 1/2 1[s_y =
     s_y'] for the score s = distance: a total preorder, so no cycle, and a reward model represents it.
   - ``"intransitive"``: C = all three criteria, combined by majority vote. Each criterion alone is a total preorder;
     their majority has Condorcet cycles on most prompts (177 of 200 held-out prompts), e.g. on ``"2 5 7=19?"``:
     ``"5+7*2"`` (exact; costs 0, 2, 2) beats ``"2*5-7"`` (16, 3, 0), which beats ``"2-7+5"`` (19, 1, 1), which
     beats ``"5+7*2"``. No reward r can represent a cycle (r(a) > r(b) > r(c) > r(a) is impossible), so no
     Bradley-Terry model fits this oracle.

   V is antisymmetric, so P(y > y') + P(y' > y) = 1 exactly and P(y > y) = 1/2.
4. :func:`preference_matrix` is the A x A matrix over the answer set (cached, read-only), a valid
   :class:`theory.games.PreferenceGame` preference (:func:`preference_game`); :func:`preference` is the oracle on two
   raw completions, = P[answer_index(y), answer_index(y')]. Unknown prompts raise ValueError naming ``prompt``;
   completions are never rejected: anything that is not a well-formed answer is OTHER.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import cache

import numpy as np

from lab.rlvr.tasks import COUNTDOWN_TEMPLATES, CountdownLite, evaluate
from theory.games import PreferenceGame

OTHER = "other"
"""Label of the class of every completion that is not a well-formed answer of the prompt."""
KINDS = ("closer", "intransitive")
CRITERIA = ("distance", "operator_cost", "inversions")
OPERATOR_COST = {"+": 0, "-": 1, "*": 2}
CRITERIA_OF_KIND = {"closer": ("distance",), "intransitive": CRITERIA}


def _check_kind(kind) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    return kind


def _checked(prompt) -> str:
    """``prompt`` if it has the Countdown-lite format ``"a b c=TT?"``; ValueError naming ``prompt`` otherwise."""
    CountdownLite._problem(prompt)
    return prompt


@cache
def _answers(prompt: str) -> tuple[tuple[str, ...], np.ndarray]:
    """(answer set with OTHER last, criteria costs (3, A)) of a checked prompt."""
    digits, target = CountdownLite._problem(prompt)
    costs: dict[str, tuple[float, float, float]] = {}
    for order, operators in COUNTDOWN_TEMPLATES:
        ordered = [digits[i] for i in order]
        text = f"{ordered[0]}{operators[0]}{ordered[1]}{operators[1]}{ordered[2]}"
        inversions = sum(first > second for first, second in itertools.combinations(ordered, 2))
        operator_cost = sum(OPERATOR_COST[operator] for operator in operators)
        costs[text] = (abs(evaluate(ordered, operators) - target), operator_cost, inversions)
    answers = (*sorted(costs), OTHER)
    table = np.array([costs[text] for text in answers[:-1]] + [(np.inf,) * len(CRITERIA)], dtype=float).T
    table.setflags(write=False)
    return answers, table


def answer_set(prompt: str) -> tuple[str, ...]:
    """The well-formed answers of ``prompt``, sorted, then :data:`OTHER` (module docstring, item 1)."""
    return _answers(_checked(prompt))[0]


def criteria(prompt: str) -> np.ndarray:
    """Costs (len(CRITERIA), A), rows in :data:`CRITERIA` order, columns in :func:`answer_set` order; +inf for
    OTHER (module docstring, item 2). Read-only."""
    return _answers(_checked(prompt))[1]


@cache
def _index(prompt: str) -> dict[str, int]:
    return {text: index for index, text in enumerate(answer_set(prompt)[:-1])}


def answer_index(prompt: str, completion) -> int:
    """Position of ``completion`` in :func:`answer_set`: its own for a well-formed answer, the last (OTHER) for
    anything else, whatever its type."""
    other = len(answer_set(prompt)) - 1
    if not isinstance(completion, str):
        return other
    return _index(prompt).get(completion, other)


def answer_counts(prompt: str, completions: Sequence) -> np.ndarray:
    """How many of ``completions`` fall in each class of :func:`answer_set` (float64, shape (A,))."""
    indices = [answer_index(prompt, completion) for completion in completions]
    return np.bincount(indices, minlength=len(answer_set(prompt))).astype(np.float64)


@cache
def _matrix(prompt: str, kind: str) -> np.ndarray:
    costs = criteria(prompt)[[CRITERIA.index(name) for name in CRITERIA_OF_KIND[kind]]]
    better = costs[:, :, None] < costs[:, None, :]
    votes = better.sum(axis=0) - better.transpose(0, 2, 1).sum(axis=0)
    matrix = np.where(votes > 0, 1.0, np.where(votes < 0, 0.0, 0.5))
    matrix.setflags(write=False)
    return matrix


def preference_matrix(prompt: str, kind: str = "closer") -> np.ndarray:
    """P[i, j] = P(answer i > answer j) over :func:`answer_set` (module docstring, item 3); read-only (A, A)."""
    return _matrix(_checked(prompt), _check_kind(kind))


def preference(prompt: str, completion, other_completion, kind: str = "closer") -> float:
    """P(completion > other_completion) for ``prompt``: 1, 1/2 or 0 (module docstring, item 3)."""
    matrix = preference_matrix(prompt, kind)
    return float(matrix[answer_index(prompt, completion), answer_index(prompt, other_completion)])


def preference_game(prompt: str, reference, beta: float, kind: str = "closer") -> PreferenceGame:
    """The beta-regularised game of ``prompt``'s preference matrix with reference ``reference`` over the answer set
    (validated by :class:`theory.games.PreferenceGame`)."""
    return PreferenceGame(preference_matrix(prompt, kind), reference, beta)
