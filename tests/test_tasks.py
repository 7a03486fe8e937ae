"""Built-in tasks: rewards on hand-written completions, data determinism, splits, config validation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from corp.tasks import TASKS, build_task
from corp.tasks.arithmetic import ArithmeticConfig, ArithmeticTask, last_number
from corp.tasks.base import SPLITS, Example
from corp.tasks.countdown import CountdownConfig, CountdownTask, evaluate, solves

CONF = Path(__file__).resolve().parents[1] / "conf"
SIZES = {"support": 8, "probe": 8, "test": 16}


def arithmetic(**kw) -> ArithmeticTask:
    return build_task(ArithmeticConfig(**kw))


def countdown(**kw) -> CountdownTask:
    return build_task(CountdownConfig(**kw))


def puzzle(numbers: list[int], target: int) -> Example:
    return Example(prompt="p", answer=str(target), meta={"numbers": numbers, "target": target})


# --- arithmetic ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("47 + 38 = 85", "85"),
        ("The answer is 85.", "85"),
        ("85\n", "85"),
        ("-9", "-9"),
        ("38 - 47 = -9", "-9"),
        ("12-3", "3"),  # a minus after a digit is an operator, not a sign
        ("1,234", "1234"),
        ("9.0", "9"),
        ("9.5", "9.5"),
        ("\u22127", "-7"),
        ("no digits here", None),
        ("", None),
    ],
)
def test_last_number(text: str, number: str | None) -> None:
    assert last_number(text) == number


def test_arithmetic_reward() -> None:
    task = arithmetic()
    ex = Example(prompt="What is 47 + 38? Reply with only the number.", answer="85")
    assert task.reward("47 + 38 = 85", ex) == 1.0
    assert task.reward("85", ex) == 1.0
    assert task.is_correct("It is 85.", ex)
    assert task.reward("84", ex) == 0.0
    assert task.reward("85 or 86", ex) == 0.0  # the last number counts
    assert task.reward("eighty-five", ex) == 0.0
    assert task.extract("eighty-five") is None


def test_arithmetic_examples_are_right() -> None:
    task = arithmetic(digits=2, operations=["+", "-", "*"])
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    for ex in task.examples(3, 200):
        a, b, op = ex.meta["a"], ex.meta["b"], ex.meta["op"]
        assert 10 <= a <= 99 and 10 <= b <= 99
        assert ex.answer == str(ops[op](a, b)) and int(ex.answer) >= 0
        assert f"{a} {op} {b}" in ex.prompt
        assert task.reward(ex.answer, ex) == 1.0


def test_arithmetic_plain_prompt_ends_with_answer_cue() -> None:
    task = arithmetic()
    ex = task.examples(0, 1)[0]
    assert task.plain_prompt(ex) == ex.prompt + "\nA:"
    assert task.messages(ex) == [{"role": "user", "content": ex.prompt}]


# --- countdown ----------------------------------------------------------------------------------


def test_countdown_reward() -> None:
    task = countdown(num_numbers=3)
    ex = puzzle([3, 5, 2], 16)
    assert task.reward("<answer>(3 + 5) * 2</answer>", ex) == pytest.approx(1.1)
    assert task.reward("<answer>2*(5+3)</answer>", ex) == pytest.approx(1.1)
    assert task.reward("<answer>(3 + 5) * 2 = 16</answer>", ex) == pytest.approx(1.1)
    assert task.reward("<answer>(3 + 5) × 2</answer>", ex) == pytest.approx(1.1)
    assert task.reward("<answer>(3 + 5) * 2", ex) == pytest.approx(1.1)  # stop string stripped
    assert task.is_correct("<answer>(3 + 5) * 2</answer>", ex)
    # only the last answer counts
    assert task.reward("<answer>3 + 5 + 2</answer> no: <answer>(3 + 5) * 2</answer>", ex) == pytest.approx(1.1)
    assert task.reward("<answer>(3 + 5) * 2</answer> no: <answer>3 + 5 + 2</answer>", ex) == pytest.approx(0.1)
    # right format, wrong answer: the format reward only
    assert task.reward("<answer>(3 + 3) * 2 + 4</answer>", ex) == pytest.approx(0.1)  # number reused
    assert task.reward("<answer>8 * 2</answer>", ex) == pytest.approx(0.1)  # numbers missing
    assert task.reward("<answer>3 + 5 * 2</answer>", ex) == pytest.approx(0.1)  # wrong value
    assert task.reward("<answer>(3 + 5) * 2 * 1</answer>", ex) == pytest.approx(0.1)  # extra number
    assert task.reward("<answer>16</answer>", ex) == pytest.approx(0.1)
    assert task.reward("<answer>the answer</answer>", ex) == pytest.approx(0.1)
    assert task.reward("<answer></answer>", ex) == pytest.approx(0.1)
    assert not task.is_correct("<answer>3 + 5 * 2</answer>", ex)
    # no tag: nothing
    assert task.reward("(3 + 5) * 2 = 16", ex) == 0.0
    assert task.reward("", ex) == 0.0
    assert task.extract("(3 + 5) * 2") is None


def test_countdown_exact_division_and_repeats() -> None:
    task = countdown()
    assert task.reward("<answer>(7 / 2) * 2</answer>", puzzle([7, 2, 2], 7)) == pytest.approx(1.1)
    assert task.reward("<answer>7 / 2</answer>", puzzle([7, 2], 3)) == pytest.approx(0.1)  # 3.5, not 3
    assert task.reward("<answer>7 / (2 - 2)</answer>", puzzle([7, 2, 2], 7)) == pytest.approx(0.1)
    assert task.reward("<answer>7 + 7</answer>", puzzle([7, 7], 14)) == pytest.approx(1.1)
    assert task.reward("<answer>7 * 2</answer>", puzzle([7, 7], 14)) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "hostile",
    [
        "__import__('os').system('echo pwned')",
        "2**99999999",
        "9**9**9**9",
        "(lambda: 1)()",
        "[3, 5, 2]",
        "3.0 + 5 + 8",
        "1e999",
        "True + 15",
        "(" * 500 + "1" + ")" * 500,
        "9" * 5000,
        "16; import os",
    ],
)
def test_countdown_hostile_answers_score_without_running(hostile: str) -> None:
    """Code, powers, floats, bools and oversized input are rejected by the AST walk, never run."""
    task = countdown()
    assert task.reward(f"<answer>{hostile}</answer>", puzzle([3, 5, 8], 16)) == pytest.approx(0.1)
    assert evaluate(hostile) is None or sorted(evaluate(hostile)[1]) != [3, 5, 8]


def test_evaluate_is_exact() -> None:
    assert evaluate("(1 + 2) / 3") is not None and evaluate("(1 + 2) / 3")[0] == 1
    assert evaluate("1 / 3 * 3")[0] == 1  # exact fractions, no float rounding
    assert evaluate("4 - 6")[1] == [4, 6]
    assert evaluate("2 ** 3") is None
    assert evaluate("1 / 0") is None


def test_countdown_instances_are_solvable() -> None:
    for kw in ({}, {"num_numbers": 3}, {"num_numbers": 4, "max_number": 10, "operations": ["+", "*"]}):
        task = countdown(**kw)
        examples = task.examples(1, 100)
        assert len(examples) == 100
        for ex in examples:
            numbers, target = ex.meta["numbers"], ex.meta["target"]
            assert len(numbers) == task.num_numbers and all(1 <= n <= task.max_number for n in numbers)
            assert 1 <= target <= task.max_target and ex.answer == str(target)
            assert solves(ex.meta["solution"], numbers, target)
            assert task.reward(f"<answer>{ex.meta['solution']}</answer>", ex) == pytest.approx(1.1)


def test_countdown_worked_examples_are_right_and_never_asked() -> None:
    task = countdown()
    shots = {shot["prompt"] for shot in task.few_shot}
    assert len(shots) == 2
    assert not shots & {ex.prompt for ex in task.examples(0, 300)}
    for shot, (numbers, target) in zip(task.few_shot, [([4, 7], 28), ([9, 3], 6)]):
        assert task.is_correct(shot["response"], puzzle(numbers, target))
    assert countdown(few_shot=[]).messages(puzzle([1, 2], 3))[-1]["role"] == "user"


# --- both tasks ---------------------------------------------------------------------------------

BOTH = [pytest.param(arithmetic, id="arithmetic"), pytest.param(countdown, id="countdown")]


def test_registry() -> None:
    assert {"arithmetic", "countdown"} <= set(TASKS)
    assert TASKS["arithmetic"] is ArithmeticTask and TASKS["countdown"] is CountdownTask


@pytest.mark.parametrize("make", BOTH)
def test_splits_deterministic_disjoint_and_seeded(make) -> None:
    task = make()
    first, again, other = task.splits(SIZES, 0), make().splits(SIZES, 0), task.splits(SIZES, 1)
    assert first == again
    assert first != other
    keys = [task.dedup_key(ex) for split in SPLITS for ex in first[split]]
    assert len(keys) == len(set(keys)) == sum(SIZES.values())
    assert {split: len(first[split]) for split in SPLITS} == SIZES
    assert task.examples(0, 5) == task.examples(0, 50)[:5]  # growing a split keeps the others' prefix


@pytest.mark.parametrize(
    ("make", "kw"),
    [
        (arithmetic, {"digits": 1, "operations": ["+"]}),  # 81 questions
        (countdown, {"max_number": 2, "max_target": 10}),  # a handful of puzzles
    ],
)
def test_too_large_splits_raise_clearly(make, kw) -> None:
    task = make(**kw)
    # just over the 81 questions: the search for more is bounded by the size asked, so keep it small
    with pytest.raises(ValueError, match=r"has only \d+ examples.*task\.test_size=100\)"):
        task.splits({"support": 8, "probe": 8, "test": 100}, 0)


@pytest.mark.parametrize(
    ("config", "kw", "key"),
    [
        (ArithmeticConfig, {"operations": ["/"]}, "task.operations"),
        (ArithmeticConfig, {"operations": []}, "task.operations"),
        (ArithmeticConfig, {"digits": 0}, "task.digits"),
        (ArithmeticConfig, {"support_size": 0}, "task.support_size"),
        (CountdownConfig, {"num_numbers": 1}, "task.num_numbers"),
        (CountdownConfig, {"num_numbers": 7}, "task.num_numbers"),
        (CountdownConfig, {"max_number": 1}, "task.max_number"),
        (CountdownConfig, {"max_target": 0}, "task.max_target"),
        (CountdownConfig, {"operations": ["**"]}, "task.operations"),
    ],
)
def test_config_validation_names_the_key(config, kw, key) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        config(**kw)


def test_operations_error_lists_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"\+, -, \*"):
        ArithmeticConfig(operations=["/"])


ALL_TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))


def test_every_registered_task_has_a_config_and_every_config_a_task() -> None:
    assert set(ALL_TASKS) == set(TASKS)
    for name, cls in TASKS.items():
        assert cls.__doc__ and sys.modules[cls.__module__].__doc__, name  # prompt, extraction, reward, vote key
        assert cls.max_new_tokens >= 1


@pytest.mark.parametrize("name", ALL_TASKS)
def test_yaml_composes_onto_schema(name: str) -> None:
    """Every key of conf/task/<name>.yaml exists in the schema and the defaults agree with the code."""
    if name == "gym":
        pytest.importorskip("reasoning_gym")
    store = ConfigStore.instance()
    store.store(group="task", name=f"{name}_schema", node=TASKS[name].config_class)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose(overrides=[f"+task={name}"])
    built = OmegaConf.to_object(cfg.task)
    assert built == TASKS[name].config_class()
    if name == "custom":  # needs a reward function and data before it can be built
        with pytest.raises(ValueError, match="task.dataset and task.data_files are both empty"):
            build_task(built)
    else:
        assert build_task(built).name == name  # builds without touching the hub: data loads lazily


def test_readme_lists_every_task() -> None:
    readme = (CONF.parent / "README.md").read_text()
    section = readme.split("## Tasks", 1)[1].split("\n## ", 1)[0]
    for name in TASKS:
        assert f"| `{name}` |" in section, name


def test_the_score_command_scores_one_completion_as_a_run_builds_the_task(tmp_path, capsys):
    """`python -m corp.tasks.score` in this process (the subprocess run is in the slow tier)."""
    import json

    from corp.tasks.score import main

    example = arithmetic(digits=3).examples(0, 3)[2]
    (tmp_path / "right.txt").write_text(f"{example.answer}\n")
    (tmp_path / "wrong.txt").write_text("no idea\n")
    assert main(["--task", "arithmetic", "--index", "2", "--completion", str(tmp_path / "right.txt"), "digits=3"]) == 0
    assert json.loads(capsys.readouterr().out) == {"task": "arithmetic", "index": 2, "reward": 1.0, "solved": True,
                                                   "answer": example.answer}  # fmt: skip
    wrong = ["--task", "arithmetic", "--index", "2", "--completion", str(tmp_path / "wrong.txt"), "task.digits=3"]
    assert main(wrong) == 0
    assert json.loads(capsys.readouterr().out)["reward"] == 0.0
    for argv, message in [(["--task", "nope"], "--task 'nope' is not a registered task"),
                          (["--task", "arithmetic", "digits=0"], "task.digits=0"),
                          (["--task", "arithmetic", "digits"], "override 'digits': expected key=value")]:  # fmt: skip
        assert main([*argv, "--index", "0", "--completion", str(tmp_path / "right.txt")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
