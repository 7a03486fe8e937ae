"""Several reward functions with weights (TRL's ``reward_funcs`` + ``reward_weights``): the reward is
the weighted sum, and each function's mean is logged per point and per round."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from corp.tasks import build_task
from corp.tasks.custom import CustomConfig
from tests.conftest import compose_config
from tests.test_observability import read_back

FIXTURES = Path(__file__).parent / "fixtures"
REWARDS = FIXTURES / "custom_rewards.py"


def two_functions(weights=(1.0, 0.5), **kw):
    return build_task(CustomConfig(data_files=str(FIXTURES / "custom.jsonl"), prompt_field="question",
                                   answer_field="answer", reward_fn=[f"{REWARDS}:contains_answer", f"{REWARDS}:brevity"],
                                   reward_weights=None if weights is None else list(weights), **kw))  # fmt: skip


def test_the_reward_is_the_weighted_sum_of_the_functions():
    task = two_functions()
    exs = task.data()["train"][:2]  # France (Paris), Italy (Rome)
    completions = ["Paris", "It is Milan"]
    assert task.reward_parts(completions, exs) == {"contains_answer": [1.0, 0.0], "brevity": [0.5, 0.25]}
    assert task.rewards(completions, exs) == [1.0 + 0.5 * 0.5, 0.5 * 0.25]
    assert two_functions(weights=None).rewards(completions, exs) == [1.5, 0.25]  # weights default to 1
    assert build_task(CustomConfig(data_files=str(FIXTURES / "custom.jsonl"), prompt_field="question",
                                   reward_fn=f"{REWARDS}:brevity")).reward_parts(completions, exs) == {
        "brevity": [0.5, 0.25]}  # fmt: skip


def test_the_same_function_twice_is_told_apart_by_position():
    task = build_task(CustomConfig(data_files=str(FIXTURES / "custom.jsonl"), prompt_field="question",
                                   reward_fn=[f"{REWARDS}:brevity", f"{REWARDS}:brevity"]))  # fmt: skip
    assert [f.name for f in task.reward_fns] == ["brevity", "brevity_1"]


@pytest.mark.parametrize(("weights", "match"), [
    ([1.0], r"task\.reward_weights=\[1\.0\]: 1 weights for 2 reward functions"),
    ([1.0, "x"], r"task\.reward_weights=.*every weight must be a finite number"),
    ([1.0, float("inf")], r"task\.reward_weights=.*every weight must be a finite number"),
])  # fmt: skip
def test_bad_weights_are_named(weights, match):
    with pytest.raises(ValueError, match=match):
        two_functions(weights=weights)


def test_a_bad_function_in_the_list_is_named_by_position():
    with pytest.raises(ValueError, match=r"task\.reward_fn\[1\]=.*has no function 'missing'"):
        build_task(CustomConfig(data_files=str(FIXTURES / "custom.jsonl"), prompt_field="question",
                                reward_fn=[f"{REWARDS}:brevity", f"{REWARDS}:missing"]))  # fmt: skip


@pytest.mark.slow
def test_two_weighted_functions_on_the_embedded_model_log_one_curve_each(tmp_path):
    """ES, two generations of two members on 2/2/2 examples of the real embedded model, W&B offline and csv."""
    from corp.run import run

    overrides = ["task=custom", f"task.data_files={FIXTURES / 'custom.jsonl'}", "task.prompt_field=question",
                 "task.answer_field=answer", f"task.reward_fn=[{REWARDS}:contains_answer,{REWARDS}:brevity]",
                 "task.reward_weights=[1.0,0.5]", "task.support_size=2", "task.probe_size=2", "task.test_size=2",
                 "task.max_new_tokens=8", "consolidation=es", "consolidation.rounds=2", "perturbation.population_size=2",
                 "perturbation.include=[model.layers.0.*]", "logger=[wandb,csv]", f"output_dir={tmp_path}",
                 "export_model=false", "trainer.num_threads=1"]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.delenv("WANDB_API_KEY", raising=False)
        results = run(compose_config(overrides))
    (run_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    points, rounds, _, _ = read_back(run_file)
    members = [p for p in points if "member/reward" in p]
    assert len(members) == results.budget.members_scored == 4
    for p in members:  # each point: one value per function, and the reward is their weighted sum
        assert {k for k in p if k.startswith("rewards/")} == {"rewards/contains_answer/mean", "rewards/brevity/mean"}
        assert p["member/reward"] == pytest.approx(p["rewards/contains_answer/mean"] + 0.5 * p["rewards/brevity/mean"])
    assert sorted(rounds) == [0, 1]
    for r in (0, 1):  # a round curve per function: the mean over the round's members
        mine = [p for p in members if p["round"] == r]
        for name in ("contains_answer", "brevity"):
            logged = rounds[r][f"population/rewards/{name}/mean"]
            assert logged == pytest.approx(sum(p[f"rewards/{name}/mean"] for p in mine) / len(mine))
    with open(tmp_path / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(row["population/rewards/brevity/mean"]) for row in rows] == pytest.approx(
        [rounds[r]["population/rewards/brevity/mean"] for r in (0, 1)])  # fmt: skip
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6
