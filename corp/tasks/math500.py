"""MATH-500 style competition math with ``\\boxed{}`` answers (hub ``HuggingFaceH4/MATH-500`` or local files).

Records need ``problem`` and either ``answer`` or a ``solution`` whose last ``\\boxed{}`` is the answer.
Prompt: the problem and a request to box the final answer. Extraction: the last ``\\boxed{}``.
Reward (docs/method.md §5): 1 when it is equivalent to the reference after normalisation
(``corp.tasks.latex``). Vote key: the normalised answer (its value when it is a number).
MATH-500 has a single split, so by default support, probe and test are cut, disjoint, from it;
point ``task.dataset``/``task.data_files`` at a MATH train set to keep the 500 for testing only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from corp.tasks.base import TASKS, Example
from corp.tasks.dataset import DataConfig, DatasetTask, column
from corp.tasks.latex import canonical, equivalent, last_boxed

PROMPT = "{problem}\nPut your final answer within \\boxed{{}}."


@dataclass
class MathConfig(DataConfig):
    """``task.*`` options of the MATH task."""

    name: str = "math"
    dataset: str | None = "HuggingFaceH4/MATH-500"
    train_split: str = "test"  # MATH-500's only split
    test_split: str | None = None  # null: support, probe and test are cut from it, disjoint


@TASKS.register("math")
class MathTask(DatasetTask):
    """Problems whose answer is the last ``\\boxed{}`` of the completion."""

    config_class = MathConfig
    max_new_tokens = 512  # the paper decodes up to 2048; task.max_new_tokens=2048 for its setting

    def to_example(self, row: dict[str, Any]) -> Example:
        problem = str(column(row, "problem")).strip()
        if row.get("answer") not in (None, ""):
            answer = str(row["answer"])
        else:
            answer = last_boxed(str(column(row, "solution")))
            if answer is None:
                raise ValueError("no 'answer' column and no \\boxed{} in 'solution'")
        return Example(prompt=PROMPT.format(problem=problem), answer=answer)

    def extract(self, completion: str) -> str | None:
        boxed = last_boxed(completion)
        return None if boxed is None else canonical(boxed)

    def reward(self, completion: str, example: Example) -> float:
        boxed = last_boxed(completion)
        return 1.0 if boxed is not None and equivalent(boxed, example.answer) else 0.0
