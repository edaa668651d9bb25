"""RLVR tasks: the vocabulary round-trips, verifiers parse hand cases (valid, invalid, garbage, overflow),
Countdown-lite answers and minority prompts agree with a brute force written independently, splits are disjoint."""

import itertools

import numpy as np
import pytest

from lab.rlvr.tasks import (
    EOS,
    PAD,
    TEST_FRACTION,
    VOCAB,
    Addition,
    CountdownLite,
    Multiplication,
    evaluate,
    make_task,
    parse_expression,
    pretraining_corpus,
    split_of,
)

GARBAGE = [
    "",
    " ",
    "?",
    "=",
    "+",
    "3+",
    "+3+5",
    "3++5+7",
    "3**5+7",
    "3+5+7=",
    "3 + 5 + 7",
    "3+5+7 ",
    "3+5+7?",
    "3+5+7$",
    "٣+5+7",
    "3.0+5+7",
    "3/5+7",
    "(3+5)+7",
    "9" * 1000,
    "9*" * 40 + "9",
    "\x00",
]


def test_vocabulary_round_trips_stops_at_eos_and_ignores_pad():
    assert VOCAB.size == 18 and (VOCAB.pad_id, VOCAB.eos_id) == (0, 1)
    text = "1 2 3=06?1+2*3"
    ids = VOCAB.encode(text)
    assert len(ids) == len(text) and VOCAB.decode(ids) == text
    assert VOCAB.decode(VOCAB.encode(text + EOS + "9+9" + PAD * 3)) == text  # stops at the first EOS
    assert VOCAB.decode(VOCAB.encode("1" + PAD + "2")) == "12"
    assert [VOCAB.tokens[i] for i in VOCAB.encode("0+?")] == ["0", "+", "?"]
    batch = VOCAB.encode_batch(["12+", "3*4"])
    assert batch.shape == (2, 3) and batch.dtype == np.int64 and VOCAB.decode_batch(batch) == ["12+", "3*4"]
    with pytest.raises(ValueError, match="text"):
        VOCAB.encode("1/2")
    with pytest.raises(ValueError, match="ids"):
        VOCAB.decode([VOCAB.size])
    with pytest.raises(ValueError, match="texts"):
        VOCAB.encode_batch(["1", "22"])


def test_parser_and_precedence_on_hand_cases():
    assert parse_expression("12+3*4") == ((12, 3, 4), ("+", "*"))
    assert parse_expression("0") == ((0,), ())
    for text in GARBAGE + ["01+2", "1+02"]:
        assert parse_expression(text) is None, text
    assert evaluate((2, 3, 4), ("+", "*")) == 14
    assert evaluate((9, 2, 3, 1), ("-", "*", "-")) == 2
    assert evaluate((2, 3, 4, 5), ("*", "*", "-")) == 19
    assert evaluate((1, 9, 9), ("-", "-")) == -17
    assert evaluate((9,) * 30, ("*",) * 29) == 9**30  # exact, no overflow


def test_countdown_verifier_accepts_every_valid_answer_and_nothing_else():
    task = CountdownLite()
    prompt = "1 2 3=06?"
    answers = {"1+2+3", "1+3+2", "2+1+3", "2+3+1", "3+1+2", "3+2+1"}
    answers |= {"1*2*3", "1*3*2", "2*1*3", "2*3*1", "3*1*2", "3*2*1"}
    assert set(task.solutions(prompt)) == answers  # 2*3*1 = 2+3+1: both strategies
    assert all(task.verify(prompt, answer) == 1.0 for answer in answers)
    for wrong in ["1+2*3", "3-2+1", "1+2+2", "1+2", "1+2+3+0", "6", "2+4", "12+3", "1+2+3-0"]:
        assert task.verify(prompt, wrong) == 0.0, wrong
    for garbage in GARBAGE:
        assert task.verify(prompt, garbage) == 0.0, garbage
    assert task.verify("9 9 1=00?", "9-9*1") == 1.0  # target 00
    assert task.verify("9 9 1=00?", "1-9+9") == 0.0  # = 1
    assert task.solutions("9 9 9=98?") == ()  # unreachable target
    assert task.strategy("1*2*3") == "multiplicative" and task.strategy("9-9-9") == "additive"
    assert task.strategy("1*2") == task.strategy("12+3+4") == task.strategy("0+1+2") == task.strategy("x") == "invalid"
    for bad_prompt in ["1 2 3=6?", "1 2 0=06?", "1 2 3=06", 123]:
        with pytest.raises(ValueError, match="prompt"):
            task.verify(bad_prompt, "1+2+3")


def _apply(operator, x, y):
    return x + y if operator == "+" else x - y if operator == "-" else x * y


def _answers_by_value(digits):
    """Every 'x o y o z' over the orders of ``digits`` by its value, with precedence case by case (no parser)."""
    answers = {}
    for x, y, z in itertools.permutations(digits):
        for o1, o2 in itertools.product("+-*", repeat=2):
            if o2 == "*" and o1 != "*":
                value = _apply(o1, x, y * z)
            else:
                value = _apply(o2, _apply(o1, x, y), z)
            answers.setdefault(value, set()).add(f"{x}{o1}{y}{o2}{z}")
    return answers


def _brute_force_answers(digits, target):
    return _answers_by_value(digits).get(target, set())


def test_countdown_solutions_and_minority_prompts_match_a_brute_force():
    task = CountdownLite()
    rng = np.random.default_rng(3)
    prompts = task.sample_prompts(300, rng, "train") + task.sample_prompts(300, rng, "test")
    prompts += ["9 8 7=79?", "1 1 1=03?", "5 5 5=30?", "2 3 4=14?", "1 2 3=06?"]
    for prompt in prompts:
        digits, target = (int(prompt[0]), int(prompt[2]), int(prompt[4])), int(prompt[6:8])
        answers = _brute_force_answers(digits, target)
        assert set(task.solutions(prompt)) == answers and answers, prompt
        assert task.minority(prompt) == all("*" in answer for answer in answers)
        if task.minority(prompt):
            assert not any(task.verify(prompt, answer) for answer in _additive_answers(digits))
    assert task.minority("9 8 7=79?") and set(task.solutions("9 8 7=79?")) == {"8*9+7", "9*8+7", "7+8*9", "7+9*8"}
    assert task.minority("2 3 4=14?") and set(task.solutions("2 3 4=14?")) == {"3*4+2", "4*3+2", "2+3*4", "2+4*3"}
    assert not task.minority("1 1 1=03?") and task.solutions("1 1 1=03?") == ("1+1+1",)
    assert task.minority("5 5 5=30?") and not task.minority("1 2 3=06?")


def _additive_answers(digits):
    return {
        f"{x}{o1}{y}{o2}{z}"
        for x, y, z in itertools.permutations(digits)
        for o1, o2 in itertools.product("+-", repeat=2)
    }


def test_countdown_draws_follow_the_strategy_mix_with_a_minority_of_multiplicative_only_prompts():
    task = CountdownLite()
    examples = task.sample_examples(20000, 0)
    assert all(task.verify(prompt, answer) == 1.0 for prompt, answer in examples[:2000])
    multiplicative = np.mean([task.strategy(answer) == "multiplicative" for _, answer in examples])
    assert abs(multiplicative - 0.15) < 4 * np.sqrt(0.15 * 0.85 / 20000)
    minority = np.mean([task.minority(prompt) for prompt, _ in examples])
    assert 0.11 < minority < 0.15  # ~14%: most multiplicative draws land on targets out of additive reach (> 27)
    assert all(task.strategy(answer) == "multiplicative" for prompt, answer in examples if task.minority(prompt))
    balanced = list(pretraining_corpus(task, 4000, 1, strategy_mix=(0.5, 0.5)))
    assert abs(np.mean([task.strategy(answer) == "multiplicative" for _, answer in balanced]) - 0.5) < 0.03
    assert CountdownLite(strategy_mix=(0.5, 0.5)).strategy_mix == (0.5, 0.5)
    with pytest.raises(ValueError, match="strategy_mix"):
        CountdownLite(strategy_mix=(0.5, 0.6))


@pytest.mark.parametrize("task", [CountdownLite(), Addition(2), Multiplication(2)], ids=lambda task: task.name)
def test_train_and_test_splits_are_disjoint_and_seeded(task):
    train = task.sample_prompts(400, 0, "train")
    test = task.sample_prompts(400, 0, "test")
    assert len(set(train)) == len(set(test)) == 400
    assert not set(train) & set(test)
    assert {split_of(prompt) for prompt in train} == {"train"} and {split_of(prompt) for prompt in test} == {"test"}
    assert all(len(prompt) == task.prompt_length and prompt.endswith("?") for prompt in train + test)
    assert all(split_of(prompt) == "train" for prompt, _ in pretraining_corpus(task, 500, 4))
    assert task.sample_examples(50, 9, split="test") == task.sample_examples(50, 9, split="test")
    assert task.sample_examples(50, 9) != task.sample_examples(50, 10)


def test_the_hash_split_holds_the_test_fraction_of_all_countdown_prompts():
    every_prompt = {
        f"{digits[0]} {digits[1]} {digits[2]}={value:02d}?"
        for digits in itertools.product(range(1, 10), repeat=3)
        for value in _answers_by_value(digits)
        if 0 <= value <= 99
    }
    task = CountdownLite()
    for split in ("train", "test"):
        assert {prompt for prompt, _ in task.sample_examples(3000, 5, split=split)} <= every_prompt
    share = np.mean([split_of(prompt) == "test" for prompt in every_prompt])
    assert abs(share - TEST_FRACTION) < 4 * np.sqrt(TEST_FRACTION * (1 - TEST_FRACTION) / len(every_prompt))


def test_multiplication_runs_out_of_distinct_test_prompts_with_a_clear_error():
    task = Multiplication(1)  # 100 problems, about 20 in the test split
    with pytest.raises(ValueError, match="ran out of distinct prompts"):
        task.sample_prompts(100, 0, "test")


def test_arithmetic_verifiers_on_hand_cases():
    addition, multiplication = Addition(3), Multiplication(2)
    assert (addition.prompt_length, addition.max_completion_length) == (9, 5)  # 999+999 = 1998, + EOS
    assert (multiplication.prompt_length, multiplication.max_completion_length) == (7, 5)  # 99*99 = 9801
    assert addition.solutions("123+045=?") == ("168",)
    assert addition.verify("123+045=?", "168") == 1.0
    assert addition.verify("999+999=?", "1998") == 1.0 and addition.verify("000+000=?", "0") == 1.0
    assert multiplication.verify("99*99=?", "9801") == 1.0 and multiplication.verify("12*00=?", "0") == 1.0
    for wrong in ["0168", "168 ", "167", "160+8", "1.68e2", "00"] + GARBAGE:
        assert addition.verify("123+045=?", wrong) == 0.0, wrong
    assert addition.strategy("168") == "direct" and addition.strategy("160+8") == addition.strategy("") == "invalid"
    with pytest.raises(ValueError, match="prompt"):
        addition.verify("123*045=?", "168")
    with pytest.raises(TypeError, match="completion"):
        addition.verify("123+045=?", 168)
    for prompt, answer in addition.sample_examples(200, 2) + multiplication.sample_examples(200, 2):
        task = addition if "+" in prompt else multiplication
        a, b = int(prompt[: (len(prompt) - 3) // 2]), int(prompt[(len(prompt) - 3) // 2 + 1 : -2])
        assert answer == str(a + b if task is addition else a * b) and task.verify(prompt, answer) == 1.0


def test_make_task_by_name():
    assert make_task("countdown").name == "countdown"
    assert make_task("addition").name == "addition-3" and make_task("addition-5").digits == 5
    assert make_task("multiplication").name == "multiplication-2"
    for name in ["countdown-2", "addition-0", "addition-x", "subtraction"]:
        with pytest.raises(ValueError, match="name"):
            make_task(name)
