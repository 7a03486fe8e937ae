"""The task interface and registry.

A task is data + prompt + answer extraction + reward, registered by name with ``@TASKS.register``
(corp.registry). Nothing outside ``corp/tasks`` branches on task names: the run looks the class up here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from corp.registry import Registry

SPLITS = ("support", "probe", "test")
# ``task.*`` keys that only choose which examples a split holds: the score store keys on the
# examples themselves, so these are left out of its context (corp.store)
EXAMPLE_SELECTION = ("support_size", "probe_size", "test_size", "data_seed")


@dataclass
class TaskConfig:
    """Fields every task has (``task.*``); tasks subclass it with their own options."""

    name: str = MISSING
    support_size: int = 32  # examples each population member is scored on
    probe_size: int = 32  # held-out examples for step-size / hyper-parameter choice
    test_size: int = 100  # never used for any choice
    data_seed: int = 0  # fixes the data and its splits, independent of the run seed
    max_new_tokens: int | None = None  # None: the task's default
    system_prompt: str | None = None
    few_shot: list[dict[str, str]] = field(default_factory=list)  # [{prompt, response}, ...]

    def __post_init__(self) -> None:
        for split in SPLITS:
            size = getattr(self, f"{split}_size")
            if not isinstance(size, int) or size < 1:
                raise ValueError(f"task.{split}_size={size!r}: must be an integer >= 1")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"task.max_new_tokens={self.max_new_tokens!r}: must be >= 1 or null")
        for i, shot in enumerate(self.few_shot):
            if set(shot) != {"prompt", "response"}:
                raise ValueError(f"task.few_shot[{i}] has keys {sorted(shot)}; allowed: prompt, response")


@dataclass(frozen=True)
class Example:
    """One prompt with what the reward needs to judge a completion."""

    prompt: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """Base class of every task.

    Subclasses are registered with ``@TASKS.register("<name>")`` (which sets ``name``), set
    ``config_class``, ``max_new_tokens`` and ``stop`` (strings after which
    decoding of an example may end), and implement ``examples`` (a deterministic,
    duplicate-free stream of candidate examples for a seed), ``reward`` and
    ``extract``. Splits are cut from that stream so they never overlap.
    """

    name: str = ""  # set by the registry
    version: int = 1  # raise it when a change alters the examples, prompts or rewards (results.json records it)
    config_class: type[TaskConfig] = TaskConfig
    max_new_tokens: int = 32
    stop: tuple[str, ...] = ()

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        if getattr(cfg, "max_new_tokens", None):
            self.max_new_tokens = int(cfg.max_new_tokens)
        self.system_prompt: str | None = getattr(cfg, "system_prompt", None)
        self.few_shot: list[dict[str, str]] = list(getattr(cfg, "few_shot", []) or [])

    @classmethod
    def from_config(cls, cfg: TaskConfig) -> Task:
        """The task from its ``task.*`` config (the registry builds every member this way)."""
        return cls(cfg)

    @classmethod
    def label(cls, cfg: dict[str, Any]) -> str:
        """The task's name in reports, from its ``task.*`` config: the registry name; a task that draws
        on several data sets (gym) names the one a run used."""
        return cls.name

    @abstractmethod
    def examples(self, seed: int, count: int) -> list[Example]:
        """``count`` distinct examples generated (or read) deterministically from ``seed``."""

    @abstractmethod
    def reward(self, completion: str, example: Example) -> float:
        """Reward in [0, 1] (task-defined scale) of one completion."""

    @abstractmethod
    def extract(self, completion: str) -> str | None:
        """The answer used for majority votes, or None when there is none."""

    def rewards(self, completions: list[str], examples: list[Example]) -> list[float]:
        """Rewards of many completions at once; tasks that can batch (code runs, custom reward
        functions) override it. The default calls ``reward`` per completion."""
        return [self.reward(c, ex) for c, ex in zip(completions, examples, strict=True)]

    def reward_parts(self, completions: list[str], examples: list[Example]) -> dict[str, list[float]]:
        """The reward's named components (a custom task's several reward functions), each one value per
        completion, for the logs (``rewards/<name>/mean``); none by default."""
        return {}

    def is_correct(self, completion: str, example: Example) -> bool:
        """Whether a completion counts as solved; accuracy is the mean of this."""
        return self.reward(completion, example) >= 1.0

    def splits(self, sizes: dict[str, int], seed: int) -> dict[str, list[Example]]:
        """Non-overlapping support/probe/test splits of the requested sizes."""
        total = sum(sizes[s] for s in SPLITS)
        pool = self.examples(seed, total)
        if len(pool) < total:
            raise ValueError(
                f"task {self.name!r} has only {len(pool)} examples, but support+probe+test "
                f"asks for {total} ({', '.join(f'task.{s}_size={sizes[s]}' for s in SPLITS)})"
            )
        keys = [self.dedup_key(ex) for ex in pool]
        if len(set(keys)) != len(keys):
            raise RuntimeError(f"task {self.name!r} produced duplicate examples; splits would overlap")
        out, start = {}, 0
        for split in SPLITS:
            out[split] = pool[start : start + sizes[split]]
            start += sizes[split]
        return out

    def dedup_key(self, example: Example) -> str:
        return example.prompt

    def messages(self, example: Example) -> list[dict[str, str]]:
        """Chat messages for one example: optional system prompt, few-shot turns, the prompt."""
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for shot in self.few_shot:
            msgs += [{"role": "user", "content": shot["prompt"]}, {"role": "assistant", "content": shot["response"]}]
        return msgs + [{"role": "user", "content": example.prompt}]

    def plain_prompt(self, example: Example) -> str:
        """The prompt as raw text, for models used without a chat template."""
        parts = [self.system_prompt] if self.system_prompt else []
        for shot in self.few_shot:
            parts += [shot["prompt"], shot["response"]]
        parts.append(example.prompt)
        return "\n\n".join(parts) + "\n"


TASKS: Registry[Task] = Registry("task", "task", Task)  # corp/tasks/__init__.py fills it


def build_task(cfg: Any) -> Task:
    """The task named ``cfg.name``, built from its config."""
    return TASKS.build(cfg.name, cfg)
