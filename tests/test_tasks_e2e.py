"""Every task through the real entry points, with a tiny budget.

Each task runs the whole ``run`` (data, splits, prompts, decoding, rewards, consolidation,
outputs) on the tiny random Llama (the embedded model's tokenizer) with local fixture data; one
of them (``custom``: its reward function is a path given on the command line) runs as
``python train.py`` in a subprocess. The point is that every task goes through a run, not what
the model learns (the embedded model's own runs are in test_train_e2e.py): only the final norm
is perturbed, three members, two examples per split, two new tokens. Every task is also
composed from the overrides and scored with and without the chat template (the fast tier).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from corp.config import ConfigError, validate
from corp.models.loading import ModelConfig, load_model
from corp.run import run
from corp.scoring.scorer import Scorer
from corp.tasks import TASKS, build_task  # the package registers every built-in task
from corp.tasks.base import SPLITS
from tests.conftest import ROOT, compose_config

FIXTURES = Path(__file__).parent / "fixtures"
BUDGET = [
    "perturbation.population_size=3",
    "perturbation.include=[model.norm.weight]",
    "task.support_size=2",
    "task.probe_size=2",
    "task.test_size=2",
    "task.max_new_tokens=2",
    "consolidation.quantiles=[0.5]",  # an elite of 2 of the 3 members
    "consolidation.betas=[5.0]",
    "consolidation.scales=[1.0]",
    "consolidation.stage2_rounds=0",
    "trainer.num_threads=1",  # tiny ops: one thread beats waiting on descheduled OpenMP workers
    "logger=none",
    "export_model=false",
]
TASK_OVERRIDES = {
    "arithmetic": [],
    "countdown": [f"task.data_files={FIXTURES / 'countdown.json'}"],
    "gsm8k": [f"task.data_files={FIXTURES / 'gsm8k'}"],
    "math": [f"task.data_files={FIXTURES / 'math.jsonl'}"],
    "humaneval": ["task.data_seed=33"],  # six of the shortest problems: half the prompt tokens of seed 0
    "mbpp": [f"task.data_files={FIXTURES / 'mbpp'}"],
    "rocstories": [f"task.data_files={FIXTURES / 'rocstories.csv'}"],
    "gym": ["task.dataset=letter_counting"],
    "custom": [f"task.data_files={FIXTURES / 'custom.jsonl'}", "task.prompt_field=question",
               f"task.reward_fn={FIXTURES / 'custom_rewards.py'}:contains_answer", "task.answer_field=answer"],
}  # fmt: skip
ON_THE_COMMAND_LINE = "custom"


def test_every_registered_task_is_run_here() -> None:
    assert set(TASK_OVERRIDES) == set(TASKS)


def check_outputs(results: dict, out: Path, name: str, model: Path) -> None:
    assert results["task"] == name and results["model"] == str(model)
    for split in SPLITS:
        assert results[split]["n"] == 2 and 0.0 <= results[split]["final"] <= 1.0
    assert results["budget"]["members_scored"] == 3
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["split"] for s in samples] == ["support"] * 2 + ["probe"] * 2 + ["test"] * 2 and all(
        isinstance(s["final_completion"], str) for s in samples
    )
    assert all(0.0 <= s["final_reward"] <= 1.1 for s in samples)  # countdown: 0.1 format bonus + 1


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(TASK_OVERRIDES) - {ON_THE_COMMAND_LINE}))
def test_task_runs(name: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    if name == "gym":
        pytest.importorskip("reasoning_gym")
    overrides = [f"task={name}", *TASK_OVERRIDES[name], *BUDGET, f"model.name_or_path={tiny_model_dir}"]
    check_outputs(run(compose_config([*overrides, f"output_dir={tmp_path}"])).to_json(), tmp_path, name, tiny_model_dir)


@pytest.mark.slow
def test_train_py_runs_a_task_from_the_command_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    name, out = ON_THE_COMMAND_LINE, tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train.py"), f"task={name}", *TASK_OVERRIDES[name], *BUDGET,
           f"model.name_or_path={tiny_model_dir}", f"hydra.run.dir={out}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_outputs(json.loads((out / "results.json").read_text()), out, name, tiny_model_dir)
    assert f"on {name} (corp, seed 0)" in proc.stdout and str(out.resolve()) in proc.stdout


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir: Path):
    torch.set_num_threads(1)
    return load_model(ModelConfig(name_or_path=str(tiny_model_dir)))


@pytest.mark.parametrize("name", sorted(TASK_OVERRIDES))
@pytest.mark.parametrize("template", [True, False])
def test_task_composes_builds_and_scores(name: str, template: bool, tiny_model) -> None:
    if name == "gym":
        pytest.importorskip("reasoning_gym")
    cfg = validate(compose_config([f"task={name}", *TASK_OVERRIDES[name], *BUDGET, "output_dir=unused"]))
    task = build_task(cfg.task)
    splits = task.splits({s: getattr(cfg.task, f"{s}_size") for s in SPLITS}, cfg.task.data_seed)
    decoded = Scorer(*tiny_model, task, splits, template, 8).score("test")
    assert len(decoded.completions) == 2 and task.max_new_tokens == 2
    assert all(0.0 <= r <= 1.1 for r in decoded.rewards)
    json.dumps(decoded.answers)  # vote keys are stored as JSON


def test_a_missing_data_file_stops_the_run_before_any_work(tmp_path: Path) -> None:
    missing = tmp_path / "none.jsonl"
    with pytest.raises(ConfigError, match=rf"^task\.data_files='{missing}': file not found$"):
        run(compose_config(["task=gsm8k", f"task.data_files={missing}", *BUDGET, f"output_dir={tmp_path / 'run'}"]))
    assert not (tmp_path / "run").exists()
