"""Custom tasks without a module: a data file, a prompt column and TRL-style reward functions.

    python train.py task=custom task.data_files=data.jsonl task.prompt_field=question \\
        task.reward_fn=my_rewards.py:exact_match task.answer_field=answer

The reward function follows TRL's convention, ``fn(prompts, completions, **columns) ->
list[float]``, every argument passed by keyword: each data column arrives as a list aligned with
``completions`` (and ``prompts`` holds the prompt column's text). A function without ``**kwargs``
receives only the columns it names. Several functions, as TRL's ``reward_funcs`` and
``reward_weights``: ``task.reward_fn=[a.py:format,a.py:correct] task.reward_weights=[0.2,1.0]``;
the reward is the weighted sum (weights default to 1), and each function's own mean is logged per
scored point and per round as ``rewards/<function name>/mean``. ``task.answer_fn`` (``fn(completion: str) -> str | None``) gives the vote key; without it the
stripped completion is the key. A completion counts as solved when its reward is at least
``task.solved_at``. Functions are given as ``module.path:function`` or ``/path/file.py:function``.
The function is called once on empty completions when the splits are made, so a wrong
signature or return type stops the run before any model work.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import numbers
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corp.errors import UserError
from corp.tasks.base import TASKS, Example
from corp.tasks.dataset import DataConfig, DatasetTask

CACHE_SIZE = 8192


@dataclass
class CustomConfig(DataConfig):
    """``task.*`` options of a custom task."""

    name: str = "custom"
    test_split: str | None = None  # one file: support, probe and test are cut from it
    prompt_field: str = "prompt"  # the column shown to the model
    answer_field: str | None = None  # optional column kept as the reference answer (samples, logs)
    reward_fn: Any = None  # required: "module.path:function" or "/path/file.py:function", or a list of them
    reward_weights: list[float] | None = None  # one per reward function (None: each 1.0); the reward is the sum
    answer_fn: str | None = None  # optional vote key: fn(completion) -> str | None
    solved_at: float = 1.0  # reward at or above which a completion counts as solved


def load_function(spec: str, key: str) -> Callable:
    """The function named by ``module.path:function`` or ``/path/file.py:function``."""
    target, sep, name = str(spec).rpartition(":")
    if not sep or not target or not name:
        raise ValueError(f"{key}={spec!r}: expected 'module.path:function' or '/path/file.py:function'")
    if target.endswith(".py") or "/" in target:
        path = Path(target).expanduser()
        if not path.is_file():
            raise ValueError(f"{key}={spec!r}: file {str(path)!r} not found")
        module_spec = importlib.util.spec_from_file_location(f"corp_custom_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as err:
            raise ValueError(f"{key}={spec!r}: importing {path} failed: {type(err).__name__}: {err}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise ValueError(f"{key}={spec!r}: cannot import module {target!r} ({err})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"{key}={spec!r}: {target} has no function {name!r}")
    return fn


@dataclass
class RewardFunction:
    """One of the task's reward functions, with its weight."""

    name: str  # the function's name: rewards/<name>/mean in the logs
    spec: str  # how the config names it, for messages
    fn: Callable
    weight: float
    params: set[str]  # the keyword parameters it names
    kwargs: bool  # whether it takes **kwargs


def _accepts(fn: Callable) -> tuple[set[str], bool]:
    """Names of the keyword parameters of ``fn`` and whether it takes ``**kwargs``."""
    params = inspect.signature(fn).parameters.values()
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def reward_functions(specs: Any, weights: Any) -> list[RewardFunction]:
    """``task.reward_fn`` (one spec or a list) with ``task.reward_weights``, loaded and checked."""
    single = isinstance(specs, str)
    specs = [specs] if single else list(specs or [])
    if not specs or not all(isinstance(s, str) and s for s in specs):
        raise ValueError("task.reward_fn is required for task=custom: 'module.path:function' or 'file.py:function', "
                         "or a list of them")  # fmt: skip
    if weights is None:
        weights = [1.0] * len(specs)
    weights = list(weights)
    if len(weights) != len(specs):
        raise ValueError(f"task.reward_weights={weights}: {len(weights)} weights for {len(specs)} reward functions; "
                         "give one per task.reward_fn entry")  # fmt: skip
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) for w in weights):
        raise ValueError(f"task.reward_weights={weights}: every weight must be a finite number")
    out: list[RewardFunction] = []
    for i, (spec, weight) in enumerate(zip(specs, weights)):
        key = "task.reward_fn" if single else f"task.reward_fn[{i}]"
        fn = load_function(spec, key)
        name = getattr(fn, "__name__", f"reward_{i}")
        if name in {f.name for f in out}:  # the same name from two files: tell them apart by position
            name = f"{name}_{i}"
        out.append(RewardFunction(name, f"{key}={spec!r}", fn, float(weight), *_accepts(fn)))
    return out


@TASKS.register("custom")
class CustomTask(DatasetTask):
    """Any data set scored by a user's reward function."""

    config_class = CustomConfig
    max_new_tokens = 64  # a guess for short answers: set task.max_new_tokens for your task

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.prompt_field, self.answer_field = str(cfg.prompt_field), cfg.answer_field
        self.reward_fns = reward_functions(cfg.reward_fn, cfg.reward_weights)
        self.answer_fn = load_function(cfg.answer_fn, "task.answer_fn") if cfg.answer_fn else None
        self.solved_at = float(cfg.solved_at)
        self._cache: OrderedDict[tuple[str, str], tuple[float, ...]] = OrderedDict()  # each function's reward

    def to_example(self, row: dict[str, Any]) -> Example:
        if self.prompt_field not in row:
            raise ValueError(
                f"task.prompt_field={self.prompt_field!r} is not a column (columns: {', '.join(sorted(map(str, row)))})"
            )
        if self.answer_field and self.answer_field not in row:
            raise ValueError(
                f"task.answer_field={self.answer_field!r} is not a column (columns: {', '.join(sorted(map(str, row)))})"
            )
        prompt = row[self.prompt_field]
        if isinstance(prompt, (list, dict)):  # e.g. TRL's conversational format, a list of chat messages
            raise ValueError(
                f"task.prompt_field={self.prompt_field!r}: a prompt is a {type(prompt).__name__}, not text "
                f"({str(prompt)[:80]}); give the user's turn as text (model.chat_template=true puts it in the "
                "model's chat template, task.system_prompt adds a system turn)"
            )
        answer = "" if not self.answer_field else str(row[self.answer_field])
        return Example(prompt=str(prompt), answer=answer, meta={"row": row})

    def _call(self, f: RewardFunction, completions: list[str], examples: list[Example],
              strict: bool = False) -> list[float]:  # fmt: skip
        rows = [ex.meta["row"] for ex in examples]
        columns = {key: [row.get(key) for row in rows] for key in rows[0]} if rows else {}
        columns["prompts"] = [ex.prompt for ex in examples]
        if not f.kwargs:
            missing = f.params - set(columns) - {"completions"}
            if missing:
                raise UserError(f"{f.spec} asks for {sorted(missing)}, which are not columns of the data")
            columns = {k: v for k, v in columns.items() if k in f.params}
        try:
            out = f.fn(completions=completions, **columns)
        except Exception as err:
            raise UserError(f"{f.spec} raised {type(err).__name__}: {err}") from err
        return self._check(f.spec, out, len(completions), strict)

    @staticmethod
    def _check(spec: str, out: Any, n: int, strict: bool) -> list[float]:
        """The function's return as floats, or an error saying what is wrong with it.

        NaN and inf are errors in the pre-flight call (``strict``); during a run they pass
        through, and the evaluator scores that model as failed (corp.evaluate.contain_nonfinite)."""
        if isinstance(out, (str, bytes, dict)) or not hasattr(out, "__len__"):
            raise UserError(f"{spec} returned {type(out).__name__}; expected a list of {n} floats")
        if len(out) != n:
            raise UserError(f"{spec} returned {len(out)} rewards for {n} completions")
        values = []
        for i, v in enumerate(out):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or (strict and not math.isfinite(float(v))):
                raise UserError(f"{spec} returned {v!r} at index {i}; every reward must be a finite number")
            values.append(float(v))
        return values

    def _parts(self, completions: list[str], examples: list[Example]) -> list[tuple[float, ...]]:
        """Each completion's reward from each function (cached: a completion seen before costs no call)."""
        keys = [(c, ex.prompt) for c, ex in zip(completions, examples, strict=True)]
        todo = [i for i, key in enumerate(keys) if key not in self._cache]
        if todo:  # one call per function for everything not seen yet: a function may batch internally
            batch = [completions[i] for i in todo], [examples[i] for i in todo]
            columns = [self._call(f, *batch) for f in self.reward_fns]
            for i, values in zip(todo, zip(*columns)):
                self._cache[keys[i]] = values
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return [self._cache[key] for key in keys]

    def rewards(self, completions: list[str], examples: list[Example]) -> list[float]:
        """The weighted sum of the functions' rewards."""
        weights = [f.weight for f in self.reward_fns]
        return [sum(w * v for w, v in zip(weights, values)) for values in self._parts(completions, examples)]

    def reward_parts(self, completions: list[str], examples: list[Example]) -> dict[str, list[float]]:
        parts = self._parts(completions, examples)
        return {f.name: [values[j] for values in parts] for j, f in enumerate(self.reward_fns)}

    def reward(self, completion: str, example: Example) -> float:
        return self.rewards([completion], [example])[0]

    def is_correct(self, completion: str, example: Example) -> bool:
        return self.reward(completion, example) >= self.solved_at

    def extract(self, completion: str) -> str | None:
        if self.answer_fn is None:
            return completion.strip() or None
        key = self.answer_fn(completion)
        if key is not None and not isinstance(key, str):
            raise ValueError(f"task.answer_fn returned {type(key).__name__}; expected str or None")
        return key

    def splits(self, sizes: dict[str, int], seed: int) -> dict[str, list[Example]]:
        out = super().splits(sizes, seed)
        probe = out["support"][:2]
        for f in self.reward_fns:  # a wrong signature or return fails now, not mid-run
            self._call(f, [""] * len(probe), probe, strict=True)
        return out
