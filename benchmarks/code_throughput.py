"""Code-task scoring throughput: main's sandbox (sentinel printed after in-process asserts) vs
this one (namespaces, outputs judged in the parent), side by side in one process.

    python benchmarks/code_throughput.py [--problems 40] [--workers 2] [--repeats 3] [--ref main]

Both score the same HumanEval canonical solutions (the first ``--problems``), ``--workers``
programs at a time, alternating ``--repeats`` times; the old path is ``corp/tasks/sandbox.py``
at git ref ``--ref``, loaded as its own module and driven as main's ``CodeTask.passes`` drove
it. Suites are built (and recorded ones recorded) before timing, as a run builds them once.
Printed: programs/s of each (best repeat, and median), their ratio, and how many passed.
"""

from __future__ import annotations

import argparse
import importlib.util
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corp.tasks import build_task  # noqa: E402
from corp.tasks.code import HumanEvalConfig  # noqa: E402
from corp.tasks.judge import judge, run_suite  # noqa: E402


def old_sandbox(ref: str):
    source = subprocess.run(["git", "show", f"{ref}:corp/tasks/sandbox.py"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "old_sandbox.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_sandbox", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_sandbox"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ref", default="main")
    args = parser.parse_args()
    old = old_sandbox(args.ref)
    task = build_task(HumanEvalConfig(timeout_s=20.0))
    data = task.data()["test"][: args.problems]
    old_limits = old.Limits(timeout_s=20.0, cpu_s=21, memory_mb=1024)

    def old_passes(ex) -> bool:  # main's CodeTask.program + passes
        meta, code = ex.meta, ex.answer
        program = f"{meta['stub']}{code}\n\n{meta['test']}\n\ncheck({meta['entry_point']})\n"
        sentinel = secrets.token_hex(16)
        result = old.run_python(f"{program}\n\nprint({sentinel!r})\n", old_limits)
        return result.ok and sentinel in result.stdout

    suites = {id(ex): task.suite(ex) for ex in data}

    def new_passes(ex) -> bool:
        return judge(suites[id(ex)], run_suite(task.program(ex.answer, ex), suites[id(ex)], task.limits))

    times: dict[str, list[float]] = {"old": [], "new": []}
    passed = {}
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        for _ in range(args.repeats):
            for name, fn in (("old", old_passes), ("new", new_passes)):
                start = time.perf_counter()
                passed[name] = sum(pool.map(fn, data))
                times[name].append(time.perf_counter() - start)
    n = len(data)
    for name in ("old", "new"):
        best, med = min(times[name]), statistics.median(times[name])
        print(f"{name}: {n / best:6.1f} programs/s best, {n / med:6.1f} median; passed {passed[name]}/{n}")
    print(f"new/old throughput: {min(times['old']) / min(times['new']):.2f} best, "
          f"{statistics.median(times['old']) / statistics.median(times['new']):.2f} median")  # fmt: skip


if __name__ == "__main__":
    main()
