"""Code tasks: HumanEval and MBPP rewards on hand-written completions, scored in the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from corp.tasks import build_task
from corp.tasks.base import SPLITS
from corp.tasks.code import HumanEvalConfig, HumanEvalTask, MBPPConfig, MBPPTask, code_key, extract_code

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def humaneval() -> HumanEvalTask:
    return build_task(HumanEvalConfig(timeout_s=20.0, memory_mb=512))


@pytest.fixture(scope="module")
def mbpp() -> MBPPTask:
    return build_task(MBPPConfig(data_files=str(FIXTURES / "mbpp"), timeout_s=20.0, memory_mb=512))


def problem(task: HumanEvalTask, entry_point: str):
    return next(ex for ex in task.data()["test"] if ex.meta["entry_point"] == entry_point)


def test_extract_code() -> None:
    assert extract_code("Here:\n```python\ndef f():\n    return 1\n```\nDone.") == "def f():\n    return 1\n"
    two = "```\nprint(f())\n```\nand\n```py\ndef f():\n    return 2\n```"
    assert extract_code(two).startswith("def f")  # the block with a function wins
    assert extract_code("```python\ndef g(): pass") == "def g(): pass"  # an unclosed fence at the end
    assert extract_code("    return x + 1\n") == "    return x + 1\n"  # no fence: raw text
    assert code_key("def f():\n    return 1") == code_key("def f():\n\n    return 1  # same tree")
    assert code_key("def f():\n    return 1") != code_key("def f():\n    return 2")
    assert code_key("") is None


def test_humaneval_ships_164_problems_split_without_overlap(humaneval: HumanEvalTask) -> None:
    data = humaneval.data()["test"]
    assert len(data) == 164
    splits = humaneval.splits({"support": 32, "probe": 32, "test": 100}, 0)
    ids = [ex.meta["entry_point"] + ex.meta["stub"] for s in SPLITS for ex in splits[s]]
    assert len(set(ids)) == 164


def test_humaneval_rewards(humaneval: HumanEvalTask) -> None:
    ex = problem(humaneval, "truncate_number")  # truncate_number(number: float) -> float
    stub = ex.meta["stub"]
    body = "    return number % 1.0\n"
    whole = "```python\ndef truncate_number(number: float) -> float:\n    return number - int(number)\n```"
    assert humaneval.reward(body, ex) == 1.0  # a bare body continues the stub
    assert humaneval.reward(whole, ex) == 1.0  # a whole function replaces it
    assert humaneval.reward(f"```python\n{stub}{body}```", ex) == 1.0
    assert humaneval.is_correct(whole, ex)
    assert humaneval.reward("    return number\n", ex) == 0.0  # wrong
    assert humaneval.reward("    return round(number % 1.0, 1)\n", ex) == 0.0  # right on some tests only
    assert humaneval.reward("```python\ndef truncate_number(number:\n```", ex) == 0.0  # syntax error
    assert humaneval.reward("I think the answer is to subtract the integer part.", ex) == 0.0
    assert humaneval.reward("", ex) == 0.0


def test_exiting_before_the_tests_does_not_pass(humaneval: HumanEvalTask) -> None:
    ex = problem(humaneval, "truncate_number")
    for cheat in ("    return 0.0\nimport sys\nsys.exit(0)\n", "    return 0.0\nimport os\nos._exit(0)\n",
                  "    return 0.0\nraise SystemExit\n", "    return 0.0\nprint = lambda *a, **k: None\n"):  # fmt: skip
        assert humaneval.reward(cheat, ex) == 0.0, cheat


def test_hostile_completions_score_zero_quickly(humaneval: HumanEvalTask) -> None:
    ex = problem(humaneval, "truncate_number")
    fast = build_task(HumanEvalConfig(timeout_s=1.0, memory_mb=256))
    for hostile in ("    while True:\n        pass\n", "    import os\n    os.kill(os.getppid(), 9)\n",
                    "    return [0] * 10**10\n", "    open('/tmp/corp-hostile', 'w')\n    return number % 1.0\n"):  # fmt: skip
        assert fast.reward(hostile, ex) == 0.0, hostile
    assert not Path("/tmp/corp-hostile").exists()


def test_results_are_cached_and_batches_run_in_parallel(humaneval: HumanEvalTask, monkeypatch) -> None:
    ex = problem(humaneval, "has_close_elements")
    good = ex.answer  # the canonical solution (a body)
    calls = []
    import corp.tasks.code as code

    real = code.run_suite
    monkeypatch.setattr(code, "run_suite", lambda *a, **k: calls.append(1) or real(*a, **k))
    task = build_task(HumanEvalConfig(timeout_s=20.0))  # generous: a loaded CI machine must not fail a correct program
    completions = [good, "    return False\n", good, "    return True\n"]
    assert task.rewards(completions, [ex] * 4) == [1.0, 0.0, 1.0, 0.0]
    assert len(calls) == 3  # the repeated completion ran once
    assert task.reward(good, ex) == 1.0 and task.is_correct(good, ex) and len(calls) == 3


def test_mbpp_rewards_on_fixture_files(mbpp: MBPPTask) -> None:
    data = mbpp.data()
    assert len(data["train"]) == 4 and len(data["test"]) == 3
    ex = next(e for e in data["test"] if "math.fsum" in e.prompt)
    assert "assert total([0.5, 0.25]) == 0.75" in ex.prompt
    right = "```python\ndef total(xs):\n    return math.fsum(xs)\n```"  # math comes from test_setup_code
    assert mbpp.reward(right, ex) == 1.0
    assert mbpp.reward("```python\ndef total(xs):\n    return 0\n```", ex) == 0.0
    assert mbpp.reward("```python\ndef totl(xs):\n    return sum(xs)\n```", ex) == 0.0  # wrong name
    assert mbpp.reward("The sum of the list.", ex) == 0.0
    assert mbpp.extract(right) == mbpp.extract("```python\ndef total(xs):\n\n    return math.fsum(xs)  # sum\n```")
    add = next(e for e in data["train"] if "add two numbers" in e.prompt)
    assert mbpp.reward("def add(a, b):\n    return a + b\n", add) == 1.0  # unfenced code is fine too
    assert mbpp.reward("def add(a, b):\n    return a + b + 0 * (a == 1)\n", add) == 1.0
    assert mbpp.reward("def add(a, b):\n    return 3\n", add) == 0.0  # passes the first assert only
    splits = mbpp.splits({"support": 2, "probe": 2, "test": 2}, 0)
    assert {ex.prompt for ex in splits["test"]} <= {ex.prompt for ex in data["test"]}


def test_mbpp_sanitized_layout_and_errors(tmp_path: Path) -> None:
    row = '{"prompt": "Write a function to double.", "test_list": ["assert dbl(2) == 4"], "test_imports": []}'
    (tmp_path / "s.jsonl").write_text(row + "\n")
    task = build_task(MBPPConfig(data_files=str(tmp_path / "s.jsonl"), test_split=None))
    ex = task.data()["train"][0]
    assert ex.prompt.startswith("Write a function to double.")
    assert task.reward("def dbl(x):\n    return 2 * x\n", ex) == 1.0
    (tmp_path / "bad.jsonl").write_text('{"text": "x", "test_list": "not a list"}\n')
    with pytest.raises(ValueError, match=r"train record 0: expected a list"):
        build_task(MBPPConfig(data_files=str(tmp_path / "bad.jsonl"), test_split=None)).data()


def test_mbpp_reference_solutions_pass(mbpp: MBPPTask) -> None:
    examples = [ex for split in mbpp.data().values() for ex in split]
    assert mbpp.rewards([ex.answer for ex in examples], examples) == [1.0] * len(examples)


def test_tests_that_cannot_be_parsed_are_recorded_from_the_reference(humaneval: HumanEvalTask) -> None:
    ex = problem(humaneval, "decode_cyclic")  # a loop over random strings: recorded
    suite = humaneval.suite(ex)
    assert suite.recorded and len(suite.calls) == 100
    assert all("expr" not in call for call in suite.calls)  # inputs only; the outputs stay here
    assert humaneval.reward(ex.answer, ex) == 1.0
    assert humaneval.reward("    return s\n", ex) == 0.0
    literal = humaneval.suite(problem(humaneval, "truncate_number"))
    assert not literal.recorded and literal.calls == [{"expr": "truncate_number(3.5)"}, {"expr": "truncate_number(1.33)"},
                                                      {"expr": "truncate_number(123.456)"}]  # fmt: skip


def test_outputs_are_compared_type_strictly(mbpp: MBPPTask) -> None:
    ex = next(e for e in mbpp.data()["test"] if "square" in e.prompt)
    assert mbpp.reward("def square(x):\n    return float(x * x)\n", ex) == 0.0  # 9.0 is not 9
    assert mbpp.reward("def square(x):\n    return x * x == 9 or x * x\n", ex) == 0.0  # True is not 9


def test_code_tasks_refuse_to_start_without_isolation(monkeypatch) -> None:
    import corp.tasks.code as code

    monkeypatch.setattr(code, "isolation", lambda: "unshare failed: Operation not permitted")
    with pytest.raises(ValueError, match=r"^task\.allow_unsafe_code=false: this machine cannot isolate"):
        build_task(MBPPConfig(data_files=str(FIXTURES / "mbpp")))
    task = build_task(MBPPConfig(data_files=str(FIXTURES / "mbpp"), allow_unsafe_code=True))
    assert not task.limits.isolate
    add = next(e for e in task.data()["train"] if "add two numbers" in e.prompt)
    assert task.reward("def add(a, b):\n    return a + b\n", add) == 1.0


@pytest.mark.slow
def test_all_164_humaneval_canonical_solutions_pass() -> None:
    task = build_task(HumanEvalConfig(timeout_s=20.0))
    data = task.data()["test"]
    rewards = task.rewards([ex.answer for ex in data], data)
    assert [ex.meta["entry_point"] for ex, r in zip(data, rewards) if r < 1.0] == []


@pytest.mark.parametrize(
    ("kw", "key"),
    [({"timeout_s": 0}, "task.timeout_s"), ({"memory_mb": 8}, "task.memory_mb"),
     ({"allowed_packages": ["numpy.linalg"]}, "task.allowed_packages")],
)  # fmt: skip
def test_code_config_validation(kw, key) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        MBPPConfig(**kw)
