"""reasoning-gym bridge: any of the ``reasoning-gym`` package's procedural datasets, with its own scorer.

``task=gym task.dataset=letter_counting`` (``pip install 'corp[gym]'``). The registry name stays
``gym`` like every other ``task.name``; the gym dataset is ``task.dataset`` and its own options
(difficulty ranges etc.) go in ``task.options``, passed to ``reasoning_gym.create_dataset``.

Prompt: the dataset's question plus a request for the answer inside ``<answer></answer>``, after
``task.num_shots`` worked examples drawn from the same dataset (a fixed stream never used for
splits). Extraction: the last ``<answer>`` (``task.answer_tag=null``: the whole completion).
Reward: the dataset's ``score_answer`` (some give partial credit; solved means 1). Vote key: the
extracted answer.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from corp.tasks.answers import MissingExtra, last_tagged
from corp.tasks.base import TASKS, Example, Task, TaskConfig

INSTRUCTION = "Give only the final answer, inside <{tag}></{tag}>."
SHOT_SEED = 2**31 - 1  # worked examples come from a stream no data_seed maps to (seeds are strided)
SEED_STRIDE = 10**6  # gym items use Random(seed + index): strided seeds never share items


@dataclass
class GymConfig(TaskConfig):
    """``task.*`` options of the reasoning-gym bridge."""

    name: str = "gym"
    dataset: str = "letter_counting"  # a reasoning_gym dataset name (reasoning_gym.factory.DATASETS)
    options: Any = None  # a mapping of the dataset's own config fields (Any: so task.options={...} works)
    num_shots: int = 2  # worked examples from the dataset, used when task.few_shot is empty
    answer_tag: str | None = "answer"  # null: the whole stripped completion is the answer

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.name != "gym":
            raise ValueError(
                f"task.name={self.name!r}: the reasoning-gym bridge is registered as 'gym'; "
                f"pick the gym dataset with task.dataset={self.name}"
            )
        if self.options is not None and not hasattr(self.options, "items"):
            raise ValueError(f"task.options={self.options!r}: must be a mapping like {{min_animals: 2}}, or null")
        if not isinstance(self.num_shots, int) or not 0 <= self.num_shots <= 16:
            raise ValueError(f"task.num_shots={self.num_shots!r}: must be an integer in 0..16")
        if self.answer_tag is not None and not str(self.answer_tag).isidentifier():
            raise ValueError(f"task.answer_tag={self.answer_tag!r}: must be a tag name like 'answer', or null")


def _gym() -> Any:
    try:
        import reasoning_gym
    except ImportError:
        raise MissingExtra("task=gym needs the reasoning-gym package: pip install 'corp[gym]'") from None
    return reasoning_gym


def _open(dataset: str, options: dict[str, Any], seed: int, size: int) -> Any:
    """A reasoning-gym dataset, with bad names and options reported as ``task.*`` errors."""
    gym = _gym()
    from reasoning_gym.factory import DATASETS

    if dataset not in DATASETS:
        close = difflib.get_close_matches(dataset, list(DATASETS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; {len(DATASETS)} exist, e.g. leg_counting"
        raise ValueError(f"task.dataset={dataset!r} is not a reasoning-gym dataset{hint}")
    try:
        return gym.create_dataset(dataset, **{**options, "seed": seed, "size": size})
    except (TypeError, ValueError, AssertionError) as err:  # unknown field, or the dataset's own check
        raise ValueError(f"task.options={options!r} rejected by reasoning-gym {dataset!r}: {err}") from None


@TASKS.register("gym")
class GymTask(Task):
    """One reasoning-gym dataset: its questions, its answers, its ``score_answer``."""

    config_class = GymConfig
    max_new_tokens = 32

    @classmethod
    def label(cls, cfg: dict[str, Any]) -> str:
        return str(cfg.get("dataset") or GymConfig.dataset)

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.dataset = str(cfg.dataset)
        self.options = dict(cfg.options or {})
        self.tag: str | None = cfg.answer_tag
        self.stop = (f"</{self.tag}>",) if self.tag else ()
        self._scorer = _open(self.dataset, self.options, 0, 1)  # fails here, at build time, on bad config
        if not self.few_shot and cfg.num_shots:
            self.few_shot = [
                {"prompt": ex.prompt, "response": self._format(ex.answer)}
                for ex in self._stream(SHOT_SEED, int(cfg.num_shots))
            ]

    def _format(self, answer: str) -> str:
        return f"<{self.tag}>{answer}</{self.tag}>" if self.tag else answer

    def _stream(self, gym_seed: int, count: int, skip: frozenset[str] = frozenset()) -> list[Example]:
        """The first ``count`` distinct questions of one gym seed (bounded: small spaces end early)."""
        size = 100 + 20 * count
        data = _open(self.dataset, self.options, gym_seed, size)
        suffix = "\n\n" + INSTRUCTION.format(tag=self.tag) if self.tag else ""
        out: dict[str, Example] = {}
        for i in range(size):
            if len(out) == count:
                break
            entry = data[i]
            prompt = str(entry["question"]).strip() + suffix
            if prompt not in out and prompt not in skip:
                out[prompt] = Example(prompt=prompt, answer=str(entry["answer"]), meta={"entry": entry})
        return list(out.values())

    def examples(self, seed: int, count: int) -> list[Example]:
        shots = frozenset(shot["prompt"] for shot in self.few_shot)  # a worked example is never asked
        return self._stream(seed * SEED_STRIDE, count, shots)

    def extract(self, completion: str) -> str | None:
        if self.tag:
            return last_tagged(completion, self.tag)
        return completion.strip() or None

    def reward(self, completion: str, example: Example) -> float:
        answer = self.extract(completion)
        if answer is None:
            return 0.0
        try:  # a scorer may choke on arbitrary text; that is a wrong answer, not a crashed run
            score = float(self._scorer.score_answer(answer, example.meta["entry"]))
        except Exception:
            return 0.0
        return min(max(score, 0.0), 1.0) if score == score else 0.0
