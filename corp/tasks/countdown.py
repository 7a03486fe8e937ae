"""Countdown: combine the given numbers, each exactly once, into an expression equal to a target.

The published reward (docs/method.md §5): 0.1 for an ``<answer>`` tag plus 1 when the last
answer uses exactly the given numbers and evaluates to the target. Every generated instance
is solvable: the target is the value of a random expression over the numbers, kept as
``meta["solution"]``. Answers are evaluated by walking their syntax tree (numbers, + - * /,
parentheses), never with ``eval``.

``task.data_files`` reads instances from a file of the published layout instead (JSON list,
JSONL, CSV or Parquet records with ``nums`` or ``numbers`` and ``target``, e.g. the ES paper's
countdown.json or Countdown-Tasks-3to4); the prompt is ours, any pre-built ``context`` is
ignored, and the generator options do not apply. Vote key: the last answer without spaces.
"""

from __future__ import annotations

import ast
import operator
import random
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from corp.tasks.base import TASKS, Example, Task, TaskConfig
from corp.tasks.data import read_file

OPERATIONS = ("+", "-", "*", "/")
FORMAT_REWARD = 0.1
SOLVED_REWARD = 1.0
MAX_ANSWER_CHARS = 200  # longer answers are wrong anyway; the bound keeps parsing cheap

PROMPT = (
    "Using the numbers {numbers}, write an arithmetic expression that equals {target}. "
    "Use each number exactly once, with + - * / and parentheses. "
    "Put the expression inside <answer></answer>."
)

_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)
_SYMBOLS = str.maketrans({"\u00d7": "*", "\u00f7": "/", "\u2212": "-", "\u2013": "-", "x": "*", "X": "*"})
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def worked_example(numbers: list[int], target: int, answer: str) -> dict[str, str]:
    """A few-shot turn in the task's own prompt format."""
    prompt = PROMPT.format(numbers=", ".join(map(str, numbers)), target=target)
    return {"prompt": prompt, "response": f"<answer>{answer}</answer>"}


def default_shots() -> list[dict[str, str]]:
    """Two worked examples: without them a small instruct model almost never writes the tags."""
    return [worked_example([4, 7], 28, "4 * 7"), worked_example([9, 3], 6, "9 - 3")]


@dataclass
class CountdownConfig(TaskConfig):
    """``task.*`` options of the countdown task."""

    name: str = "countdown"
    test_size: int = 200  # the default run's test: standard error about 3 points instead of 4
    num_numbers: int = 2  # numbers per instance, each to be used exactly once
    max_number: int = 30  # numbers are drawn from 1..max_number (repeats allowed); the base solves ~17 %
    max_target: int = 100  # targets lie in 1..max_target
    operations: list[str] = field(default_factory=lambda: ["+", "-", "*", "/"])  # used to build targets
    few_shot: list[dict[str, str]] = field(default_factory=default_shots)
    data_files: str | None = None  # a file of published-layout records instead of generated ones

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, low in (("num_numbers", 2), ("max_number", 2), ("max_target", 1)):
            value = getattr(self, key)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"task.{key}={value!r}: must be an integer >= {low}")
        if self.num_numbers > 6:
            raise ValueError(f"task.num_numbers={self.num_numbers!r}: must be at most 6")
        ops = list(self.operations)
        if not ops or any(op not in OPERATIONS for op in ops) or len(set(ops)) != len(ops):
            raise ValueError(
                f"task.operations={ops!r}: must be a non-empty list of distinct values from {', '.join(OPERATIONS)}"
            )


def last_answer(completion: str) -> str | None:
    """The expression in the last ``<answer>`` tag, or None when there is none.

    An unclosed tag at the very end counts, so the reward does not depend on whether the
    scorer keeps the ``</answer>`` stop string. A trailing ``= value`` is dropped and
    ``×``, ``÷``, ``x`` are read as ``*`` and ``/``.
    """
    found = _ANSWER.findall(completion)
    return found[-1].split("=")[0].translate(_SYMBOLS).strip() if found else None


def evaluate(expression: str) -> tuple[Fraction, list[int]] | None:
    """Exact value and the integer literals of an arithmetic expression, or None if it is not one."""
    if len(expression) > MAX_ANSWER_CHARS:
        return None
    try:
        tree = ast.parse(expression, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    numbers: list[int] = []

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            numbers.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        raise ValueError(f"not allowed: {type(node).__name__}")

    try:
        return walk(tree.body), numbers
    except (ValueError, ZeroDivisionError, RecursionError):
        return None


def solves(expression: str, numbers: list[int], target: int) -> bool:
    """Whether ``expression`` uses exactly ``numbers`` (as a multiset) and equals ``target``."""
    result = evaluate(expression)
    return result is not None and sorted(result[1]) == sorted(numbers) and result[0] == target


@TASKS.register("countdown")
class CountdownTask(Task):
    """Reach a target from a few small numbers; the answer goes inside ``<answer>...</answer>``."""

    config_class = CountdownConfig
    max_new_tokens = 32
    stop = ("</answer>",)

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.num_numbers = int(cfg.num_numbers)
        self.max_number = int(cfg.max_number)
        self.max_target = int(cfg.max_target)
        self.operations = tuple(cfg.operations)
        self.records = (
            None if not cfg.data_files else [self._record(r, i) for i, r in enumerate(read_file(cfg.data_files))]
        )

    @staticmethod
    def _record(row: dict, index: int) -> tuple[list[int], int]:
        """(numbers, target) of one file record, or an error naming the record."""
        numbers, target = row.get("nums", row.get("numbers")), row.get("target")
        if isinstance(numbers, str):  # CSV cells hold lists as text
            numbers = [int(n) for n in re.findall(r"-?\d+", numbers)]
        ok = isinstance(numbers, (list, tuple)) and numbers and all(type(n) is int for n in numbers)
        if not ok or not isinstance(target, (int, str)) or not str(target).lstrip("-").isdigit():
            raise ValueError(
                f"task.data_files: record {index} needs integer lists 'nums' or 'numbers' and an integer 'target'; "
                f"got keys {sorted(row)}"
            )
        return list(numbers), int(target)

    def _from_file(self, seed: int, count: int) -> list[Example]:
        """Shuffled, de-duplicated file instances (few-shot puzzles excluded)."""
        order = list(range(len(self.records)))
        random.Random(seed).shuffle(order)
        shots = {shot["prompt"] for shot in self.few_shot}
        out: dict[str, Example] = {}
        for i in order:
            if len(out) == count:
                break
            numbers, target = self.records[i]
            prompt = PROMPT.format(numbers=", ".join(map(str, numbers)), target=target)
            key = f"{sorted(numbers)}->{target}"
            if key not in out and prompt not in shots:
                out[key] = Example(prompt=prompt, answer=str(target), meta={"numbers": numbers, "target": target})
        return list(out.values())

    def _instance(self, rng: random.Random) -> tuple[list[int], int, str] | None:
        """Random numbers and a random expression over them, or None if it left the allowed range."""
        numbers = [rng.randint(1, self.max_number) for _ in range(self.num_numbers)]
        terms = [(n, str(n)) for n in numbers]
        while len(terms) > 1:
            (a, ea), (b, eb) = terms.pop(rng.randrange(len(terms))), terms.pop(rng.randrange(len(terms)))
            op = rng.choice(self.operations)
            if op == "+":
                value = a + b
            elif op == "-":
                value = a - b
            elif op == "*":
                value = a * b
            else:
                value = a // b if a % b == 0 else 0
            if value < 1:  # keep every intermediate a positive integer, as in the game
                return None
            terms.append((value, f"({ea} {op} {eb})"))
        value, expression = terms[0]
        if value > self.max_target:
            return None
        return numbers, value, expression[1:-1]

    def examples(self, seed: int, count: int) -> list[Example]:
        if self.records is not None:
            return self._from_file(seed, count)
        rng = random.Random(seed)
        shots = {shot["prompt"] for shot in self.few_shot}  # a worked example is never also a question
        out: dict[str, Example] = {}
        for _ in range(1000 + 200 * count):  # bounded: a too-small space ends, and splits() says so
            if len(out) == count:
                break
            made = self._instance(rng)
            if made is None:
                continue
            numbers, target, solution = made
            key = f"{sorted(numbers)}->{target}"  # same numbers in another order are the same puzzle
            if key in out:
                continue
            prompt = PROMPT.format(numbers=", ".join(map(str, numbers)), target=target)
            if prompt in shots:
                continue
            meta = {"numbers": numbers, "target": target, "solution": solution}
            out[key] = Example(prompt=prompt, answer=str(target), meta=meta)
        return list(out.values())

    def dedup_key(self, example: Example) -> str:
        return f"{sorted(example.meta['numbers'])}->{example.meta['target']}"

    def extract(self, completion: str) -> str | None:
        """The last answer without whitespace: the vote key; the reward is a function of it."""
        answer = last_answer(completion)
        return None if answer is None else "".join(answer.split())

    def reward(self, completion: str, example: Example) -> float:
        answer = self.extract(completion)
        if answer is None:
            return 0.0
        solved = solves(answer, example.meta["numbers"], example.meta["target"])
        return FORMAT_REWARD + (SOLVED_REWARD if solved else 0.0)
