"""The verifiable preference oracle of lab.rlvr.preference: answer sets, hand-computed entries, P + P^T = 1, the
intransitive kind's Condorcet cycle on a real prompt, the transitive kind's total preorder, garbage-proof parsing."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.rlvr.preference import (
    KINDS,
    OTHER,
    answer_counts,
    answer_index,
    answer_set,
    criteria,
    preference,
    preference_game,
    preference_matrix,
)
from lab.rlvr.tasks import CountdownLite

PROMPT = "2 5 7=19?"
"""A Countdown-lite prompt (train split; solutions 5+7*2, 7*2+5, 5+2*7, 2*7+5)."""
CYCLE = ("5+7*2", "2*5-7", "2-7+5")


def held_out_prompts(n=40):
    return CountdownLite().sample_prompts(n, 0, "test")


def test_the_answer_set_is_every_well_formed_answer_deduplicated_plus_other():
    answers = answer_set(PROMPT)
    assert len(answers) == 54 + 1 and answers[-1] == OTHER and list(answers[:-1]) == sorted(answers[:-1])
    assert set(CountdownLite().solutions(PROMPT)) == {"5+7*2", "7*2+5", "5+2*7", "2*7+5"} <= set(answers)
    assert len(answer_set("2 2 3=07?")) == 3 * 9 + 1  # 3 distinct orders of 2 2 3, 9 operator pairs
    assert len(answer_set("1 1 1=03?")) == 9 + 1
    # distance, operator cost (+ 0, - 1, * 2), inversions (pairs written in decreasing order)
    costs = criteria(PROMPT)
    np.testing.assert_array_equal(costs[:, answers.index("5+7*2")], [0, 2, 2])
    np.testing.assert_array_equal(costs[:, answers.index("2*5-7")], [16, 3, 0])
    np.testing.assert_array_equal(costs[:, answers.index("7-5-2")], [19, 2, 3])
    assert np.all(np.isinf(costs[:, -1]))


def test_closer_to_the_target_wins_hand_computed_entries():
    cases = {
        ("5+7*2", "7+2*5"): 1.0,  # 19 (exact) against 17
        ("2*5+7", "7+2*5"): 0.5,  # 17 and 17: a tie
        ("2*7*5", "2-5-7"): 0.0,  # 70 is 51 away, -10 is 29 away
        ("7-5-2", "2-7+5"): 0.5,  # 0 and 0 are both 19 away
        ("2-7+5", "garbage"): 1.0,  # any well-formed answer beats an unparseable one
        ("5+7*3", "2-7-5"): 0.0,  # wrong digits are OTHER, however close their value (26)
        ("", "5+7*"): 0.5,  # two unparseable completions tie
    }
    for (first, second), expected in cases.items():
        assert preference(PROMPT, first, second) == expected, (first, second)
        assert preference(PROMPT, second, first) == 1 - expected


def test_intransitive_majority_hand_computed_entries_and_the_cycle():
    # distance, operator cost, inversions: (0, 2, 2) > (16, 3, 0) > (19, 1, 1) > (0, 2, 2), each by 2 votes to 1
    a, b, c = CYCLE
    assert preference(PROMPT, a, b, "intransitive") == 1.0
    assert preference(PROMPT, b, c, "intransitive") == 1.0
    assert preference(PROMPT, c, a, "intransitive") == 1.0
    assert preference(PROMPT, a, c, "closer") == 1.0  # the grader alone ranks them a > b > c
    assert preference(PROMPT, "2*5+7", "2*7+5", "intransitive") == 0.5  # (2, 2, 0) vs (0, 2, 1): 1 vote each
    assert preference(PROMPT, "2*5+7", "2+5+7", "intransitive") == 0.5  # (2, 2, 0) vs (5, 0, 0)
    assert preference(PROMPT, "2*5*7", "2*5-7", "intransitive") == 0.0  # (51, 4, 0) vs (16, 3, 0)
    assert preference(PROMPT, "7-5-2", "x", "intransitive") == 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_every_matrix_is_a_valid_preference_game(kind):
    for prompt in [PROMPT, "1 1 1=03?", "9 9 8=90?", *held_out_prompts()]:
        matrix = preference_matrix(prompt, kind)
        n = len(answer_set(prompt))
        assert matrix.shape == (n, n) and not matrix.flags.writeable
        np.testing.assert_array_equal(matrix + matrix.T, np.ones((n, n)))
        assert set(np.unique(matrix)) <= {0.0, 0.5, 1.0}
        assert matrix[-1, :-1].max() == 0.0  # OTHER loses to every well-formed answer
        game = preference_game(prompt, np.full(n, 1 / n), 0.1, kind)
        np.testing.assert_array_equal(game.preference, matrix)


def strict_wins(matrix):
    return (matrix == 1.0).astype(int)


def test_closer_is_a_total_preorder_the_majority_is_not():
    cyclic = 0
    for prompt in [PROMPT, *held_out_prompts()]:
        closer, majority = preference_matrix(prompt, "closer"), preference_matrix(prompt, "intransitive")
        score = criteria(prompt)[0]  # the distance: P = 1[s < s'] + 1/2 1[s = s']
        np.testing.assert_array_equal(closer, (score[:, None] < score[None, :]) + 0.5 * (score[:, None] == score))
        weak = (closer >= 0.5).astype(int)  # weakly preferred: transitive, so no 3-cycle of strict wins either
        assert np.all((weak @ weak > 0) <= weak)
        assert np.trace(np.linalg.matrix_power(strict_wins(closer), 3)) == 0
        cyclic += np.trace(np.linalg.matrix_power(strict_wins(majority), 3)) > 0
    assert cyclic >= 30  # of 41 prompts: Condorcet cycles are the rule, not a corner case
    wins = strict_wins(preference_matrix(PROMPT, "intransitive"))
    a, b, c = (answer_set(PROMPT).index(text) for text in CYCLE)
    assert wins[a, b] and wins[b, c] and wins[c, a]


GARBAGE = st.one_of(
    st.text(alphabet="0123456789+-*=? $_xé٣", max_size=80),
    st.text(max_size=20),
    st.none(),
    st.integers(),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(first=GARBAGE, second=GARBAGE, kind=st.sampled_from(KINDS))
def test_garbage_never_crashes_and_stays_antisymmetric(first, second, kind):
    forward, backward = preference(PROMPT, first, second, kind), preference(PROMPT, second, first, kind)
    assert forward in (0.0, 0.5, 1.0) and forward + backward == 1.0
    assert answer_index(PROMPT, first) in range(len(answer_set(PROMPT)))


def test_counts_and_errors_name_the_argument():
    counts = answer_counts(PROMPT, ["5+7*2", "5+7*2", "junk", None, "05+7*2"])
    assert counts.sum() == 5 and counts[answer_set(PROMPT).index("5+7*2")] == 2 and counts[-1] == 3
    with pytest.raises(ValueError, match="^prompt:"):
        preference_matrix("2 5 7=19")
    with pytest.raises(ValueError, match="^prompt:"):
        answer_set(["2 5 7=19?"])
    with pytest.raises(ValueError, match="^kind:"):
        preference_matrix(PROMPT, "reward_model")
