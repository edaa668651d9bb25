"""Verifiable tasks for toy-scale RLVR: a character vocabulary, fixed-width prompts and parsing verifiers.

1. Text is character-level over :data:`VOCAB` (digits, ``+ - *``, ``=``, ``?``, space, EOS ``$``, PAD ``_``).
   Every prompt of a task has the same width and ends with ``?``, so a group of G completions shares a dense
   prefix; a completion is the answer text followed by EOS.
2. A problem belongs to the test split when a hash of its prompt falls in the first :data:`TEST_FRACTION` of the
   hash range (:func:`split_of`): train and test are disjoint by construction, for every seed.
3. Verifiers parse (:func:`parse_expression`: integers joined by ``+ - *``, no leading zeros, at most
   :data:`MAX_EXPRESSION_LENGTH` characters) and evaluate with the usual precedence (:func:`evaluate`); anything
   else (garbage, unknown characters, overlong strings) earns 0. Nothing is ever ``eval``-ed.
4. Tasks (the :class:`Task` protocol):

   - :class:`Addition` ``"123+045=?"`` -> ``"168"`` and :class:`Multiplication` ``"12*34=?"`` -> ``"408"``: one
     answer, one strategy (``"direct"``).
   - :class:`CountdownLite` (the "many answers, two strategies" task of TinyZero's Countdown, shrunk): prompt
     ``"a b c=TT?"`` with digits a, b, c in 1..9 and a two-digit target TT in 00..99; an answer ``"d o d o d"``
     uses each of a, b, c once with operators ``+ - *`` and evaluates to TT. Answers without ``*`` are
     ``"additive"``, the others ``"multiplicative"``. Problems are generated as their own solutions: draw the
     digits, draw a strategy from the mix (default 85% additive, 15% multiplicative), draw one of the strategy's
     templates (an order of the digits and the operators) uniformly until its value lies in 00..99; the target is
     that value. A pretraining model that fits this corpus learns p(answer | prompt) proportional to the mix's
     weight of the answer among the prompt's solutions. About 14% of the prompts drawn this way are
     *minority* prompts, solvable only with ``*`` (:meth:`CountdownLite.minority`).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from typing import Protocol

import numpy as np

DIGITS = "0123456789"
OPERATORS = "+-*"
EOS = "$"
PAD = "_"
TEST_FRACTION = 0.2
"""Share of all problems (by prompt hash) that belong to the test split."""
MAX_EXPRESSION_LENGTH = 64
"""Completions longer than this are not parsed (reward 0): no huge integers from a babbling model."""
SPLITS = ("train", "test")


class Vocabulary:
    """Character-level tokens: PAD (id 0), EOS (id 1), then ``symbols`` in order.

    ``encode`` maps every character (EOS and PAD included) to its id; ``decode`` stops at the first EOS and drops
    PAD, so ``decode(encode(text + EOS + PAD * k)) == text`` for text over ``symbols``.
    """

    def __init__(self, symbols: str) -> None:
        if not isinstance(symbols, str) or len(set(symbols)) != len(symbols) or {EOS, PAD} & set(symbols):
            raise ValueError(f"symbols: expected distinct characters other than {EOS!r} and {PAD!r}, got {symbols!r}")
        self.tokens: tuple[str, ...] = (PAD, EOS, *symbols)
        self._ids = {token: index for index, token in enumerate(self.tokens)}

    @property
    def size(self) -> int:
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        return self._ids[PAD]

    @property
    def eos_id(self) -> int:
        return self._ids[EOS]

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text: expected a str, got {type(text).__name__}")
        unknown = sorted(set(text) - self._ids.keys())
        if unknown:
            raise ValueError(f"text: characters {unknown} are not in the vocabulary {''.join(self.tokens)!r}")
        return [self._ids[character] for character in text]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of a 1-D sequence of ids (list, numpy array or torch tensor on any device)."""
        characters = []
        for token in ids.tolist() if hasattr(ids, "tolist") else list(ids):
            if not 0 <= token < self.size:
                raise ValueError(f"ids: expected token ids in [0, {self.size}), got {token}")
            if token == self.eos_id:
                break
            if token != self.pad_id:
                characters.append(self.tokens[token])
        return "".join(characters)

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Equal-width texts (fixed-width prompts) as an int64 array (n, width)."""
        widths = {len(text) for text in texts}
        if len(widths) != 1:
            raise ValueError(f"texts: expected a non-empty list of equal-width strings, got widths {sorted(widths)}")
        return np.array([self.encode(text) for text in texts], dtype=np.int64)

    def decode_batch(self, rows) -> list[str]:
        """One :meth:`decode` per row of a (n, T) array or tensor."""
        return [self.decode(row) for row in (rows.tolist() if hasattr(rows, "tolist") else rows)]


VOCAB = Vocabulary(DIGITS + OPERATORS + "=? ")


def split_of(prompt: str) -> str:
    """``"test"`` if the prompt's 64-bit BLAKE2b hash is below TEST_FRACTION of the range, else ``"train"``."""
    digest = int.from_bytes(hashlib.blake2b(prompt.encode(), digest_size=8).digest(), "little")
    return "test" if digest < TEST_FRACTION * 2**64 else "train"


def parse_expression(text: str) -> tuple[tuple[int, ...], tuple[str, ...]] | None:
    """``"12+3*4"`` -> ``((12, 3, 4), ("+", "*"))``; None unless ``text`` is integers (no leading zeros) joined by
    single operators from ``+ - *``, at most MAX_EXPRESSION_LENGTH characters."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_EXPRESSION_LENGTH:
        return None
    numbers, operators, digits = [], [], ""
    for character in text:
        if character in DIGITS:
            digits += character
        elif character in OPERATORS and digits:
            numbers.append(digits)
            operators.append(character)
            digits = ""
        else:
            return None
    if not digits:
        return None
    numbers.append(digits)
    if any(len(number) > 1 and number[0] == "0" for number in numbers):
        return None
    return tuple(int(number) for number in numbers), tuple(operators)


def evaluate(numbers: Sequence[int], operators: Sequence[str]) -> int:
    """Value of n0 o1 n1 o2 n2 ... with ``*`` binding tighter than ``+`` and ``-`` (left to right), in exact ints."""
    if len(numbers) != len(operators) + 1:
        raise ValueError(f"operators: expected {len(numbers) - 1} operators for {len(numbers)} numbers")
    total, sign, term = 0, 1, numbers[0]
    for operator, number in zip(operators, numbers[1:], strict=True):
        if operator == "*":
            term *= number
        elif operator in "+-":
            total, sign, term = total + sign * term, 1 if operator == "+" else -1, number
        else:
            raise ValueError(f"operators: expected operators from {OPERATORS!r}, got {operator!r}")
    return total + sign * term


def _generator(seed) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer | np.random.Generator):
        raise TypeError(f"seed: expected an int or a numpy.random.Generator, got {seed!r}")
    return np.random.default_rng(seed)


def _check_int(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer >= ``minimum`` (bools refused), else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _strategy_mix(strategy_mix, strategies: tuple[str, ...]) -> tuple[float, ...]:
    mix = np.asarray(strategy_mix, dtype=float)
    if mix.shape != (len(strategies),) or not np.all(mix >= 0) or not np.isclose(mix.sum(), 1.0):
        raise ValueError(
            f"strategy_mix: expected {len(strategies)} non-negative weights summing to 1 for {strategies}, "
            f"got {strategy_mix!r}"
        )
    return tuple((mix / mix.sum()).tolist())


class Task(Protocol):
    """What the trainer and evaluation need from a task."""

    name: str
    strategies: tuple[str, ...]
    strategy_mix: tuple[float, ...]  # of the prompts the task samples
    prompt_length: int
    max_completion_length: int  # answer characters + EOS

    def sample_examples(self, n, seed, *, split: str = "train", strategy_mix=None) -> list[tuple[str, str]]: ...

    def sample_prompts(self, n, seed, split: str = "train") -> list[str]: ...

    def verify(self, prompt: str, completion: str) -> float: ...

    def solutions(self, prompt: str) -> tuple[str, ...]: ...

    def strategy(self, completion: str) -> str: ...


class _GeneratedTask:
    """Sampling shared by the tasks: problems are drawn with a solution, then kept if their prompt is in the split.

    Subclasses set ``strategies``, ``strategy_mix`` and implement ``_propose(rng, strategy, m)`` -> list of
    (prompt, solution) drawn from ``strategy`` (possibly fewer than m: out-of-range draws are dropped).
    """

    strategies: tuple[str, ...]
    strategy_mix: tuple[float, ...]

    def _propose(self, rng: np.random.Generator, strategy: int, m: int) -> list[tuple[str, str]]:
        raise NotImplementedError

    def sample_examples(self, n, seed, *, split: str = "train", strategy_mix=None) -> list[tuple[str, str]]:
        """``n`` (prompt, solution) pairs of ``split``; each pair's strategy is drawn from ``strategy_mix`` (default:
        the task's), then the problem from that strategy, redrawn until it is in range and in the split."""
        n = _check_int(n, "n")
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        mix = self.strategy_mix if strategy_mix is None else _strategy_mix(strategy_mix, self.strategies)
        rng = _generator(seed)
        slots = rng.choice(len(mix), size=n, p=mix)
        examples: list[tuple[str, str]] = [("", "")] * n
        for strategy in range(len(mix)):
            where = np.flatnonzero(slots == strategy)
            found: list[tuple[str, str]] = []
            while len(found) < len(where):
                proposals = self._propose(rng, strategy, max(2 * (len(where) - len(found)), 16))
                found.extend(pair for pair in proposals if split_of(pair[0]) == split)
            for slot, pair in zip(where, found, strict=False):
                examples[slot] = pair
        return examples

    def sample_prompts(self, n, seed, split: str = "train") -> list[str]:
        """``n`` distinct prompts of ``split``, in the order :meth:`sample_examples` draws them.

        Distinct prompts are tilted towards rare problems relative to the draws: e.g. 500 distinct Countdown-lite test
        prompts (of about 1280) hold ~20% minority prompts, where ~14% of the draws are minority prompts."""
        n = _check_int(n, "n")
        rng = _generator(seed)
        prompts: dict[str, None] = {}
        stale = 0
        while len(prompts) < n:
            before = len(prompts)
            for prompt, _ in self.sample_examples(max(n - len(prompts), 64), rng, split=split):
                if len(prompts) < n:
                    prompts.setdefault(prompt)
            stale = stale + 1 if len(prompts) == before else 0
            if stale == 20:
                raise ValueError(f"n: the {split} split ran out of distinct prompts at {len(prompts)} < {n}")
        return list(prompts)


def pretraining_corpus(task: Task, n, seed, strategy_mix=None) -> Iterator[tuple[str, str]]:
    """``n`` (prompt, solution) pairs from the train split; ``strategy_mix`` defaults to the task's (Countdown-lite:
    (0.85, 0.15), additive vs multiplicative)."""
    yield from task.sample_examples(n, seed, split="train", strategy_mix=strategy_mix)


def _digits_only(text: str) -> bool:
    return bool(text) and all(character in DIGITS for character in text)


class _BinaryArithmetic(_GeneratedTask):
    """``"{a}{op}{b}=?"`` with a, b zero-padded to ``digits`` digits; the answer is the value, no leading zeros."""

    operator: str
    strategies = ("direct",)
    strategy_mix = (1.0,)

    def __init__(self, digits: int) -> None:
        self.digits = _check_int(digits, "digits")
        self.prompt_length = 2 * self.digits + 3
        largest = evaluate((10**self.digits - 1,) * 2, (self.operator,))
        self.max_completion_length = len(str(largest)) + 1

    @property
    def name(self) -> str:
        return f"{type(self).__name__.lower()}-{self.digits}"

    def _operands(self, prompt: str) -> tuple[int, int]:
        d = self.digits
        if (
            not isinstance(prompt, str)
            or len(prompt) != self.prompt_length
            or prompt[d] != self.operator
            or prompt[-2:] != "=?"
            or not _digits_only(prompt[:d] + prompt[d + 1 : 2 * d + 1])
        ):
            raise ValueError(f"prompt: expected {self.name} format 'a{self.operator}b=?' with {d}-digit a, b")
        return int(prompt[:d]), int(prompt[d + 1 : 2 * d + 1])

    def _propose(self, rng, strategy, m):
        operands = rng.integers(0, 10**self.digits, size=(m, 2))
        return [
            (f"{a:0{self.digits}d}{self.operator}{b:0{self.digits}d}=?", str(evaluate((a, b), (self.operator,))))
            for a, b in operands.tolist()
        ]

    def solutions(self, prompt: str) -> tuple[str, ...]:
        return (str(evaluate(self._operands(prompt), (self.operator,))),)

    def verify(self, prompt: str, completion: str) -> float:
        """1.0 iff ``completion`` is exactly the value in decimal without leading zeros."""
        (answer,) = self.solutions(prompt)
        if not isinstance(completion, str):
            raise TypeError(f"completion: expected a str, got {type(completion).__name__}")
        return float(completion == answer)

    def strategy(self, completion: str) -> str:
        parsed = parse_expression(completion)
        return "direct" if parsed is not None and not parsed[1] else "invalid"


class Addition(_BinaryArithmetic):
    operator = "+"

    def __init__(self, digits: int = 3) -> None:
        super().__init__(digits)


class Multiplication(_BinaryArithmetic):
    operator = "*"

    def __init__(self, digits: int = 2) -> None:
        super().__init__(digits)


COUNTDOWN_TEMPLATES: tuple[tuple[tuple[int, int, int], tuple[str, str]], ...] = tuple(
    itertools.product(itertools.permutations(range(3)), itertools.product(OPERATORS, repeat=2))
)
"""The 6 x 9 = 54 answer templates of Countdown-lite: an order of the three digits and two operators."""


def _countdown_expression(numbers: Sequence[int], template) -> tuple[str, int]:
    order, operators = template
    ordered = [numbers[i] for i in order]
    text = f"{ordered[0]}{operators[0]}{ordered[1]}{operators[1]}{ordered[2]}"
    return text, evaluate(ordered, operators)


@cache
def _countdown_solutions() -> dict[str, tuple[str, ...]]:
    """Every Countdown-lite prompt with a target in 00..99 -> its distinct answers, sorted."""
    table: dict[str, set[str]] = {}
    for numbers in itertools.product(range(1, 10), repeat=3):
        for template in COUNTDOWN_TEMPLATES:
            text, value = _countdown_expression(numbers, template)
            if 0 <= value <= 99:
                table.setdefault(f"{numbers[0]} {numbers[1]} {numbers[2]}={value:02d}?", set()).add(text)
    return {prompt: tuple(sorted(answers)) for prompt, answers in table.items()}


class CountdownLite(_GeneratedTask):
    """Reach a two-digit target with three digits and ``+ - *`` (module docstring, item 4).

    ``strategy_mix`` weights (additive, multiplicative) for the prompts this task samples (default 0.85, 0.15, the
    pretraining mix; RL runs may use another mix, e.g. (0.5, 0.5), to keep more minority prompts).
    """

    name = "countdown"
    strategies = ("additive", "multiplicative")
    prompt_length = 9
    max_completion_length = 6
    _templates = (
        tuple(t for t in COUNTDOWN_TEMPLATES if "*" not in t[1]),
        tuple(t for t in COUNTDOWN_TEMPLATES if "*" in t[1]),
    )

    def __init__(self, *, strategy_mix: tuple[float, float] = (0.85, 0.15)) -> None:
        self.strategy_mix = _strategy_mix(strategy_mix, self.strategies)

    @staticmethod
    def _problem(prompt: str) -> tuple[tuple[int, int, int], int]:
        if (
            not isinstance(prompt, str)
            or len(prompt) != 9
            or prompt[1] != " "
            or prompt[3] != " "
            or prompt[5] != "="
            or prompt[8] != "?"
            or not _digits_only(prompt[0] + prompt[2] + prompt[4] + prompt[6:8])
            or "0" in prompt[0] + prompt[2] + prompt[4]
        ):
            raise ValueError(f"prompt: expected Countdown-lite format 'a b c=TT?' with a, b, c in 1..9, got {prompt!r}")
        return (int(prompt[0]), int(prompt[2]), int(prompt[4])), int(prompt[6:8])

    def _propose(self, rng, strategy, m):
        templates = self._templates[strategy]
        numbers = rng.integers(1, 10, size=(m, 3)).tolist()
        choices = rng.integers(0, len(templates), size=m).tolist()
        proposals = []
        for digits, choice in zip(numbers, choices, strict=True):
            text, value = _countdown_expression(digits, templates[choice])
            if 0 <= value <= 99:
                proposals.append((f"{digits[0]} {digits[1]} {digits[2]}={value:02d}?", text))
        return proposals

    def solutions(self, prompt: str) -> tuple[str, ...]:
        """All distinct valid answers (empty if the target is unreachable), sorted."""
        self._problem(prompt)
        return _countdown_solutions().get(prompt, ())

    def verify(self, prompt: str, completion: str) -> float:
        """1.0 iff ``completion`` uses the prompt's three digits once each, joined by ``+ - *``, and evaluates to
        the target."""
        numbers, target = self._problem(prompt)
        if not isinstance(completion, str):
            raise TypeError(f"completion: expected a str, got {type(completion).__name__}")
        parsed = parse_expression(completion)
        if parsed is None or sorted(parsed[0]) != sorted(numbers):
            return 0.0
        return float(evaluate(*parsed) == target)

    def strategy(self, completion: str) -> str:
        """``"multiplicative"`` / ``"additive"`` for a well-formed answer shape (three digits 1..9, two operators,
        with / without ``*``), whether or not it is correct; ``"invalid"`` otherwise."""
        parsed = parse_expression(completion)
        if parsed is None or len(parsed[0]) != 3 or not all(1 <= number <= 9 for number in parsed[0]):
            return "invalid"
        return "multiplicative" if "*" in parsed[1] else "additive"

    def minority(self, prompt: str) -> bool:
        """True iff the prompt is solvable and every answer uses ``*``."""
        answers = self.solutions(prompt)
        return bool(answers) and all("*" in answer for answer in answers)


def make_task(name: str) -> Task:
    """A task from its ``name``: ``"countdown"``, ``"addition"`` / ``"addition-D"``, ``"multiplication"`` /
    ``"multiplication-D"`` (D digits per operand; defaults 3 and 2)."""
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, got {type(name).__name__}")
    kind, _, digits = name.partition("-")
    if kind == "countdown" and not digits:
        return CountdownLite()
    arithmetic = {"addition": Addition, "multiplication": Multiplication}
    if kind in arithmetic and (not digits or (digits.isdigit() and int(digits) > 0)):
        return arithmetic[kind](int(digits)) if digits else arithmetic[kind]()
    raise ValueError(f"name: expected 'countdown', 'addition[-D]' or 'multiplication[-D]', got {name!r}")
