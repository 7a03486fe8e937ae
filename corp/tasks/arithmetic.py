"""Arithmetic: integer sums, differences and products of random operands.

Cheap, fully synthetic and exactly verifiable, so it is the task for quick runs
and tests; its difficulty is tuned with ``digits`` and ``operations``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from corp.tasks.base import TASKS, Example, Task, TaskConfig

OPERATIONS = ("+", "-", "*")

# A number: thousands-grouped ("1,234") or plain digits, with an optional decimal part.
# The minus only counts as a sign when it does not follow a digit ("12-3" ends in 3, not -3).
_NUMBER = re.compile(r"((?<!\d)-)?(\d{1,3}(?:,\d{3})+(?!\d)|\d+)(\.\d+)?")
_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-"})


@dataclass
class ArithmeticConfig(TaskConfig):
    """``task.*`` options of the arithmetic task."""

    name: str = "arithmetic"
    support_size: int = 64  # cheap to score, so larger splits than the base defaults:
    probe_size: int = 64  # less selection noise in stage 1 and the gate
    test_size: int = 200  # and a less noisy test estimate
    digits: int = 2  # digits of each operand
    operations: list[str] = field(default_factory=lambda: ["+", "-"])  # drawn uniformly; allowed: + - *

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.digits, int) or not 1 <= self.digits <= 9:
            raise ValueError(f"task.digits={self.digits!r}: must be an integer in 1..9")
        ops = list(self.operations)
        if not ops or any(op not in OPERATIONS for op in ops) or len(set(ops)) != len(ops):
            raise ValueError(
                f"task.operations={ops!r}: must be a non-empty list of distinct values from {', '.join(OPERATIONS)}"
            )


def last_number(text: str) -> str | None:
    """The last number in ``text`` as a canonical string (commas dropped, ``9.0`` -> ``9``), or None."""
    matches = list(_NUMBER.finditer(text.translate(_MINUS)))
    if not matches:
        return None
    sign, digits, frac = matches[-1].groups()
    value = int(digits.replace(",", ""))
    if frac and frac.strip(".0"):
        return f"{'-' if sign else ''}{value}{frac}"  # not an integer: never equals an integer answer
    return str(-value if sign else value)


@TASKS.register("arithmetic")
class ArithmeticTask(Task):
    """Questions like "What is 47 + 38?"; reward 1 when the last number in the completion is the result."""

    config_class = ArithmeticConfig
    max_new_tokens = 16
    stop = ("\n",)  # the answer is one short line; anything after it is never read

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.digits = int(cfg.digits)
        self.operations = tuple(cfg.operations)

    def examples(self, seed: int, count: int) -> list[Example]:
        rng = random.Random(seed)
        lo, hi = 10 ** (self.digits - 1), 10**self.digits - 1
        shots = {shot["prompt"] for shot in self.few_shot}  # a worked example is never also a question
        out: dict[str, Example] = {}
        # Bounded so a too-small space ends (splits() then names the sizes) instead of looping forever.
        for _ in range(1000 + 50 * count):
            if len(out) == count:
                break
            op, a, b = rng.choice(self.operations), rng.randint(lo, hi), rng.randint(lo, hi)
            if op == "-" and b > a:
                a, b = b, a  # keep results non-negative
            prompt = f"What is {a} {op} {b}? Reply with only the number."
            if prompt not in out and prompt not in shots:
                value = a + b if op == "+" else a - b if op == "-" else a * b
                out[prompt] = Example(prompt=prompt, answer=str(value), meta={"a": a, "b": b, "op": op})
        return list(out.values())

    def plain_prompt(self, example: Example) -> str:
        """Ends with an answer cue: without it a raw-text model opens with a newline, which the stop ends."""
        return super().plain_prompt(example) + "A:"

    def extract(self, completion: str) -> str | None:
        return last_number(completion)

    def reward(self, completion: str, example: Example) -> float:
        return 1.0 if self.extract(completion) == example.answer else 0.0
