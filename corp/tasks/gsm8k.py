"""GSM8K: grade-school math word problems (``openai/gsm8k`` or local JSONL with ``question``/``answer``).

Prompt: the question and a request to end with ``#### <number>``. Extraction: the number after the
last ``####`` (strict), else the last number in the completion. Reward (docs/method.md §5): 1 when
it equals the reference after dropping commas, ``$``, ``%`` and trailing units. Vote key: that
number. The reference is the number after ``####`` in the dataset's worked answer (or the answer
itself when it is a bare number).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from corp.tasks.answers import canonical_number, first_number, last_number
from corp.tasks.base import TASKS, Example
from corp.tasks.dataset import DataConfig, DatasetTask, column

PROMPT = '{question}\nLet\'s think step by step and write the final answer after "####".'
_STRICT = re.compile(r"####\s*([^\n]*)")


@dataclass
class GSM8KConfig(DataConfig):
    """``task.*`` options of GSM8K."""

    name: str = "gsm8k"
    dataset: str | None = "openai/gsm8k"
    subset: str | None = "main"


def final_number(text: str) -> str | None:
    """The canonical number after the last ``####``, else the last number in ``text``, else None."""
    strict = _STRICT.findall(text)
    found = first_number(strict[-1]) if strict else None
    return found if found is not None else last_number(text)


@TASKS.register("gsm8k")
class GSM8KTask(DatasetTask):
    """Word problems with one numeric answer; reward 1 when the final number is right."""

    config_class = GSM8KConfig
    max_new_tokens = 256  # the paper decodes up to 1024; task.max_new_tokens=1024 for its setting

    def to_example(self, row: dict[str, Any]) -> Example:
        question, solution = str(column(row, "question")), str(column(row, "answer"))
        strict = _STRICT.findall(solution)
        reference = first_number(strict[-1]) if strict else canonical_number(solution)
        if reference is None:
            raise ValueError(f"answer {solution[-60:]!r} has neither '#### <number>' nor a bare number")
        return Example(prompt=PROMPT.format(question=question.strip()), answer=reference)

    def extract(self, completion: str) -> str | None:
        return final_number(completion)

    def reward(self, completion: str, example: Example) -> float:
        return 1.0 if self.extract(completion) == example.answer else 0.0
