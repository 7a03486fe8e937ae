"""Custom tasks: a data file, a prompt column and a TRL-style reward function, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from corp.tasks import build_task
from corp.tasks.base import SPLITS
from corp.tasks.custom import CustomConfig, CustomTask

FIXTURES = Path(__file__).parent / "fixtures"
REWARDS = FIXTURES / "custom_rewards.py"
TINY = {"support": 2, "probe": 2, "test": 2}


def custom(fn: str = "contains_answer", data: str = "custom.jsonl", **kw) -> CustomTask:
    kw.setdefault("prompt_field", "question")
    kw.setdefault("answer_field", "answer")
    return build_task(CustomConfig(data_files=str(FIXTURES / data), reward_fn=f"{REWARDS}:{fn}", **kw))


@pytest.mark.parametrize("data", ["custom.jsonl", "custom.csv", "custom.parquet"])
def test_reward_function_gets_completions_and_columns(data: str) -> None:
    task = custom(data=data)
    splits = task.splits(TINY, 0)
    assert len({ex.prompt for s in SPLITS for ex in splits[s]}) == 6
    ex = next(e for e in task.data()["train"] if "France" in e.prompt)
    assert ex.prompt == "Name the capital of France." and ex.answer == "Paris"
    assert task.reward("It is Paris.", ex) == 1.0 and task.is_correct("paris", ex)
    assert task.reward("It is Lyon.", ex) == 0.0
    assert task.reward("", ex) == 0.0
    exs = task.data()["train"][:3]
    assert task.rewards([e.answer for e in exs], exs) == [1.0, 1.0, 1.0]


def test_module_path_functions_and_functions_without_columns() -> None:
    task = build_task(CustomConfig(data_files=str(FIXTURES / "custom.jsonl"), prompt_field="question",
                                   reward_fn="tests.fixtures.custom_rewards:length_only", solved_at=0.5))  # fmt: skip
    ex = task.data()["train"][0]
    assert task.reward("12345", ex) == pytest.approx(0.5) and task.is_correct("12345", ex)
    assert task.reward("1234", ex) == pytest.approx(0.4) and not task.is_correct("1234", ex)


def test_answer_fn_gives_the_vote_key() -> None:
    task = custom(answer_fn=f"{REWARDS}:first_word")
    assert task.extract("Paris, of course") == "paris"
    assert task.extract("   ") is None
    assert custom().extract("  Paris \n") == "Paris"  # default: the stripped completion


def test_the_reward_function_is_called_once_per_completion(monkeypatch) -> None:
    task = custom()
    calls = []
    (f,) = task.reward_fns
    fn = f.fn
    f.fn = lambda **kw: calls.append(len(kw["completions"])) or fn(**kw)
    exs = task.data()["train"][:4]
    task.rewards(["Paris", "x", "Madrid", "y"], exs)
    assert calls == [4]  # one batched call
    assert task.reward("Paris", exs[0]) == 1.0 and task.is_correct("Paris", exs[0]) and calls == [4]  # cached


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"reward_fn": None}, r"task\.reward_fn is required"),
        ({"reward_fn": "no_colon"}, r"task\.reward_fn='no_colon': expected 'module\.path:function'"),
        ({"reward_fn": "/nowhere/rewards.py:f"}, r"task\.reward_fn=.*file '/nowhere/rewards\.py' not found"),
        ({"reward_fn": "no_such_module_xyz:f"}, r"task\.reward_fn=.*cannot import module 'no_such_module_xyz'"),
        ({"reward_fn": f"{REWARDS}:missing"}, r"task\.reward_fn=.*has no function 'missing'"),
        ({"answer_fn": f"{REWARDS}:missing"}, r"task\.answer_fn=.*has no function 'missing'"),
        ({"data_files": "/nowhere/data.jsonl"}, r"task\.data_files='/nowhere/data\.jsonl': file not found"),
    ],
)
def test_build_errors_name_what_is_missing(kw, match) -> None:
    base = {"data_files": str(FIXTURES / "custom.jsonl"), "prompt_field": "question",
            "reward_fn": f"{REWARDS}:contains_answer"}  # fmt: skip
    with pytest.raises(ValueError, match=match):
        build_task(CustomConfig(**{**base, **kw}))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"prompt_field": "text"}, r"task\.prompt_field='text' is not a column \(columns: answer, question\)"),
        ({"answer_field": "gold"}, r"task\.answer_field='gold' is not a column"),
        ({"fn": "wrong_length"}, r"returned 1 rewards for 2 completions"),
        ({"fn": "returns_none"}, r"returned None at index 0; every reward must be a finite number"),
        ({"fn": "returns_nan"}, r"returned nan at index 0"),
        ({"fn": "returns_text"}, r"returned str; expected a list of 2 floats"),
        ({"fn": "needs_missing_column"}, r"asks for \['difficulty'\], which are not columns"),
        ({"fn": "raises"}, r"task\.reward_fn=.*:raises' raised RuntimeError: boom"),
    ],
)
def test_bad_data_or_reward_functions_fail_when_the_splits_are_made(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        custom(**kw).splits(TINY, 0)


def test_errors_name_the_function() -> None:
    with pytest.raises(ValueError, match=r"task\.reward_fn='.*custom_rewards\.py:wrong_length' returned 1 rewards"):
        custom(fn="wrong_length").splits(TINY, 0)
