"""The reasoning-gym bridge: its data, its scorer, its config errors."""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from corp.tasks import build_task
from corp.tasks.base import SPLITS
from corp.tasks.gym import GymConfig, GymTask

pytest.importorskip("reasoning_gym")


def gym(**kw) -> GymTask:
    return build_task(GymConfig(**kw))


@pytest.fixture(scope="module")
def letters() -> GymTask:
    return gym(dataset="letter_counting")


def test_examples_carry_the_gym_question_answer_and_entry(letters: GymTask) -> None:
    examples = letters.examples(0, 8)
    assert len(examples) == 8
    for ex in examples:
        entry = ex.meta["entry"]
        assert ex.prompt.startswith(entry["question"].strip())
        assert ex.prompt.endswith("inside <answer></answer>.")
        assert ex.answer == str(entry["answer"])
    assert letters.examples(0, 3) == examples[:3]  # a longer split keeps the shorter one's prefix
    assert {ex.prompt for ex in letters.examples(1, 8)}.isdisjoint({ex.prompt for ex in examples})


def test_reward_uses_the_datasets_own_scorer(letters: GymTask) -> None:
    ex = letters.examples(0, 1)[0]
    right, wrong = ex.answer, str(int(ex.answer) + 1)
    assert letters.reward(f"<answer>{right}</answer>", ex) == 1.0
    assert letters.is_correct(f"Counting... <answer>{right}</answer>", ex)
    assert letters.reward(f"<answer>{right}", ex) == 1.0  # the stop string may be cut off
    assert letters.reward(f"<answer>{wrong}</answer>", ex) == 0.0
    assert letters.reward(f"<answer>{right}</answer> or <answer>{wrong}</answer>", ex) == 0.0  # last counts
    assert letters.reward(right, ex) == 0.0  # no tag: no answer
    assert letters.reward("", ex) == 0.0
    assert letters.extract(f"<answer> {right} </answer>") == right
    assert letters.extract("no tags") is None


def test_partial_credit_from_the_gym_scorer_is_kept_but_is_not_solved(letters: GymTask) -> None:
    ex = letters.examples(0, 1)[0]
    padded = f"<answer>{ex.answer} letters</answer>"  # the reference inside a longer answer
    assert letters.reward(padded, ex) == pytest.approx(len(ex.answer) / len(f"{ex.answer} letters"))
    assert not letters.is_correct(padded, ex)


def test_worked_examples_come_from_the_dataset_and_are_never_asked(letters: GymTask) -> None:
    assert len(letters.few_shot) == 2
    for shot in letters.few_shot:
        assert shot["response"].startswith("<answer>") and shot["response"].endswith("</answer>")
    pool = {ex.prompt for ex in letters.examples(0, 300)}
    assert pool.isdisjoint({shot["prompt"] for shot in letters.few_shot})
    assert gym(dataset="letter_counting", num_shots=0).few_shot == []
    mine = [{"prompt": "Q?", "response": "<answer>1</answer>"}]
    assert gym(dataset="letter_counting", few_shot=mine).few_shot == mine


def test_options_reach_the_dataset_and_untagged_answers_work() -> None:
    task = gym(dataset="basic_arithmetic", options={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
               answer_tag=None, num_shots=0)  # fmt: skip
    ex = task.examples(0, 1)[0]
    assert len(re.findall(r"\d+", ex.meta["entry"]["metadata"]["expression"])) == 2  # two terms
    assert task.stop == () and task.reward(f"  {ex.answer}\n", ex) == 1.0


def test_splits_are_disjoint(letters: GymTask) -> None:
    splits = letters.splits({"support": 6, "probe": 6, "test": 6}, 0)
    prompts = [ex.prompt for s in SPLITS for ex in splits[s]]
    assert len(prompts) == len(set(prompts)) == 18


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (
            {"dataset": "leg_countin"},
            r"task\.dataset='leg_countin' is not a reasoning-gym dataset; did you mean leg_counting",
        ),
        ({"dataset": "leg_counting", "options": {"no_such_field": 1}}, r"task\.options=.*rejected"),
        ({"dataset": "leg_counting", "options": {"min_animals": 5, "max_animals": 2}}, r"task\.options=.*rejected"),
    ],
)
def test_bad_datasets_and_options_fail_at_build_time_naming_the_key(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        gym(**kw)


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"name": "leg_counting"}, "task.name"),
        ({"num_shots": -1}, "task.num_shots"),
        ({"answer_tag": "not a tag"}, "task.answer_tag"),
    ],
)
def test_config_validation_names_the_key(kw, key) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        GymConfig(**kw)


def test_task_name_set_to_a_dataset_points_to_task_dataset() -> None:
    with pytest.raises(ValueError, match=r"task\.dataset=leg_counting"):
        GymConfig(name="leg_counting")


def test_a_crashing_gym_scorer_scores_zero(letters: GymTask, monkeypatch) -> None:
    ex = letters.examples(0, 1)[0]

    def boom(answer, entry):
        raise KeyError("metadata")

    monkeypatch.setattr(letters._scorer, "score_answer", boom)
    assert letters.reward(f"<answer>{ex.answer}</answer>", ex) == 0.0


def test_command_line_options_reach_the_dataset() -> None:
    from tests.conftest import compose_config

    cfg = compose_config(["task=gym", "task.dataset=basic_arithmetic", "task.options={min_terms:2,max_terms:2}"])
    task = build_task(OmegaConf.to_object(cfg.task))
    assert task.dataset == "basic_arithmetic" and task.options == {"min_terms": 2, "max_terms": 2}
    assert all(len(re.findall(r"\d+", ex.meta["entry"]["metadata"]["expression"])) == 2 for ex in task.examples(0, 9))
