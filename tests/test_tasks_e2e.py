"""Every task through the real entry points, on local fixture data, with a tiny budget.

Four tasks (one per kind: generated, package data + sandbox, local data set, user reward) run
the whole ``run`` on the tiny random model (real tokenizer, so real prompts and chat template),
and the gym bridge also on the embedded model; the others are composed from the command-line
overrides, built, split and scored by the real ``Scorer``. The point is that each task's data,
prompts, scoring and outputs go through the run, not what the model learns: only the final
norm is perturbed and decoding is cut to a few tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from corp.config import ConfigError, validate
from corp.models.loading import ModelConfig, load_model
from corp.run import run
from corp.scoring.scorer import Scorer
from corp.tasks.base import SPLITS, build_task
from tests.conftest import compose_config

FIXTURES = Path(__file__).parent / "fixtures"
BUDGET = [
    "perturbation.population_size=4",
    "perturbation.include=[model.norm.weight]",
    "perturbation.noise_cache_mb=0",  # the cache sizes its slots by the (here tiny) perturbed dimension
    "task.support_size=2",
    "task.probe_size=2",
    "task.test_size=2",
    "task.max_new_tokens=6",
    "consolidation.quantiles=[0.5]",
    "consolidation.betas=[5.0]",
    "consolidation.scales=[1.0]",
    "consolidation.stage2_rounds=0",
    "trainer.num_threads=1",  # tiny ops: one thread beats waiting on descheduled OpenMP workers
    "logger=none",
    "export_model=false",
]
TASK_OVERRIDES = {
    "countdown": [f"task.data_files={FIXTURES / 'countdown.json'}"],
    "gsm8k": [f"task.data_files={FIXTURES / 'gsm8k'}"],
    "math": [f"task.data_files={FIXTURES / 'math.jsonl'}"],
    "humaneval": [],
    "mbpp": [f"task.data_files={FIXTURES / 'mbpp'}"],
    "rocstories": [f"task.data_files={FIXTURES / 'rocstories.csv'}"],
    "gym": ["task.dataset=letter_counting"],
    "custom": [f"task.data_files={FIXTURES / 'custom.jsonl'}", "task.prompt_field=question",
               f"task.reward_fn={FIXTURES / 'custom_rewards.py'}:contains_answer", "task.answer_field=answer"],
}  # fmt: skip


def run_task(name: str, out: Path, model: str | Path, extra: tuple[str, ...] = ()) -> dict:
    overrides = [f"task={name}", *TASK_OVERRIDES[name], *BUDGET, f"model.name_or_path={model}", *extra]
    results = run(compose_config([*overrides, f"output_dir={out}"]))
    assert results["task"] == name and results["model"] == str(model)
    for split in ("support", "probe", "test"):
        assert results[split]["n"] == 2 and 0.0 <= results[split]["final"] <= 1.0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and all(isinstance(s["final_completion"], str) for s in samples)
    return results


WHOLE_RUN = ["gym", "humaneval", "rocstories", "custom"]


@pytest.mark.parametrize("name", WHOLE_RUN)
def test_task_runs_end_to_end(name: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    if name == "gym":
        pytest.importorskip("reasoning_gym")
    run_task(name, tmp_path, tiny_model_dir, ("model.chat_template=true",))


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir: Path):
    torch.set_num_threads(1)
    return load_model(ModelConfig(name_or_path=str(tiny_model_dir)))


@pytest.mark.parametrize("name", sorted(set(TASK_OVERRIDES) - set(WHOLE_RUN)))
@pytest.mark.parametrize("template", [True, False])
def test_task_composes_builds_and_scores(name: str, template: bool, tiny_model) -> None:
    cfg = validate(compose_config([f"task={name}", *TASK_OVERRIDES[name], *BUDGET, "output_dir=unused"]))
    task = build_task(cfg.task)
    splits = task.splits({s: getattr(cfg.task, f"{s}_size") for s in SPLITS}, cfg.task.data_seed)
    decoded = Scorer(*tiny_model, task, splits, template, 8).score("test")
    assert len(decoded.completions) == 2 and task.max_new_tokens == 6
    assert all(0.0 <= r <= 1.1 for r in decoded.scores.rewards)
    json.dumps(decoded.answers)  # vote keys are stored as JSON


@pytest.mark.slow
def test_the_gym_bridge_runs_on_the_embedded_model(tmp_path: Path) -> None:
    pytest.importorskip("reasoning_gym")
    run_task("gym", tmp_path, "embedded", ("task.max_new_tokens=4",))


def test_a_missing_data_file_stops_the_run_before_any_work(tmp_path: Path) -> None:
    missing = tmp_path / "none.jsonl"
    with pytest.raises(ConfigError, match=rf"^task\.data_files='{missing}': file not found$"):
        run(compose_config(["task=gsm8k", f"task.data_files={missing}", *BUDGET, f"output_dir={tmp_path / 'run'}"]))
    assert not (tmp_path / "run").exists()
