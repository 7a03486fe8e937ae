"""End-to-end runs of the real entry point: a tiny config-built model and the embedded model."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from corp.config import validate
from corp.models.loading import ModelConfig, load_model
from corp.models.precision import set_compute_dtype
from corp.perturb.direction import Direction
from corp.perturb.noise import NoiseSource
from corp.perturb.space import ParameterSpace
from corp.scoring.scorer import Scorer
from corp.tasks.base import SPLITS, build_task
from tests.conftest import ROOT, TINY_SIGMAS, compose_config, tiny_run


def test_tiny_run_writes_every_output(tiny_results):
    out, res = tiny_results
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(res))
    for key in ("method", "task", "model", "seed", "seconds"):
        assert key in on_disk
    for split in SPLITS:
        assert 0.0 <= on_disk[split]["base"] <= 1.0 and 0.0 <= on_disk[split]["final"] <= 1.0
    assert on_disk["budget"]["members_scored"] >= 4
    assert on_disk["budget"]["example_evals"] >= 4 * 8
    direction = json.loads((out / "direction.json").read_text())
    assert set(direction["direction"]) == {"seeds", "coeffs"}
    assert (out / "model" / "config.json").exists()
    assert (out / "plots" / "population_rewards.png").stat().st_size > 10_000
    assert (out / "checkpoints" / "last.json").exists()
    pop = np.load(out / "populations" / "round_000.npz")
    assert pop["rewards"].shape == (4, 8) and len(pop["seeds"]) == 4
    answers = json.loads(str(pop["answers"]))
    assert len(answers) == 4 and all(len(row) == 8 for row in answers)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["split"] for s in samples] == ["support"] * 8 + ["probe"] * 8 + ["test"] * 8
    assert (out / "csv" / "metrics.csv").exists()


@pytest.mark.slow
def test_same_config_and_seed_give_the_same_result(tiny_results, tiny_model_dir, tmp_path):
    out, first = tiny_results
    second = tiny_run(tiny_model_dir, tmp_path, [TINY_SIGMAS])
    for split in SPLITS:
        assert first[split] == second[split]
    assert (out / "direction.json").read_text() == (tmp_path / "direction.json").read_text()


def test_direction_json_rebuilds_the_exported_model_exactly(tiny_results, tiny_model_dir):
    out, _ = tiny_results
    saved = json.loads((out / "direction.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    space = ParameterSpace(base, NoiseSource(saved["noise_mode"]), saved["include"], saved["exclude"])
    space.load_committed(Direction.from_json(saved["direction"]))
    exported = AutoModelForCausalLM.from_pretrained(out / "model")
    exported_params = dict(exported.named_parameters())
    for name, p in base.named_parameters():
        assert torch.equal(p, exported_params[name]), name


SMOKE = ["debug=smoke"]  # population 4, splits 8/8/8, the first layer perturbed, CoRP's smallest grids


def run_embedded_cli(tmp_path, extra=()):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train.py"), *SMOKE, f"hydra.run.dir={out}", *extra]
    env = {**__import__("os").environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("WANDB_API_KEY", None)  # a key means "go online" to the W&B logger; this machine has no network
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory):
    """`python train.py debug=smoke`: a complete run of the real embedded model, W&B offline, shared by the
    tests below (one run of the embedded model is the slow tier's most expensive item)."""
    return run_embedded_cli(tmp_path_factory.mktemp("embedded"))


@pytest.mark.slow
def test_debug_smoke_is_a_complete_run(embedded_run):
    out, _ = embedded_run
    for name in ("results.json", "direction.json", "config.json", "samples.jsonl", "rounds.jsonl",
                 "model/config.json", "plots/population_rewards.png", "checkpoints/last.json",
                 "populations/round_000.npz", ".hydra/config.yaml", "train.log"):  # fmt: skip
        assert (out / name).exists(), name
    res = json.loads((out / "results.json").read_text())
    assert res["test"]["n"] == 8 and res["budget"]["members_scored"] >= 4


@pytest.mark.slow
def test_embedded_cli_run_prints_the_table_and_logs_to_wandb_offline(embedded_run):
    out, proc = embedded_run
    res = json.loads((out / "results.json").read_text())
    assert res["model"] == "embedded" and res["task"] == "countdown" and res["method"] == "corp"
    assert "base" in proc.stdout and "final" in proc.stdout and str(out.resolve()) in proc.stdout
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


@pytest.mark.slow
def test_exported_embedded_model_reproduces_the_test_accuracy(embedded_run):
    out, _ = embedded_run
    res = json.loads((out / "results.json").read_text())
    cfg = validate(compose_config([*SMOKE, "output_dir=/tmp/unused"]))
    task = build_task(cfg.task)
    splits = task.splits({s: getattr(cfg.task, f"{s}_size") for s in SPLITS}, cfg.task.data_seed)
    model = AutoModelForCausalLM.from_pretrained(out / "model")  # plain transformers, float32 as exported
    set_compute_dtype(model, getattr(torch, res["dtype"]))  # decoded as the run decoded it (bf16 where native)
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    tokenizer.padding_side = "left"
    decoded = Scorer(model, tokenizer, task, splits, cfg.model.chat_template, cfg.model.batch_size).score("test")
    assert decoded.accuracy == res["test"]["final"]
    finals = [json.loads(line)["final_completion"] for line in (out / "samples.jsonl").read_text().splitlines()
              if json.loads(line)["split"] == "test"]  # fmt: skip
    assert decoded.completions == finals


def test_model_without_chat_template_is_refused_when_one_is_asked_for(tiny_model_dir, tmp_path):
    (tmp_path / "m").mkdir()
    for f in tiny_model_dir.iterdir():
        if f.name != "chat_template.jinja":
            (tmp_path / "m" / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((tmp_path / "m" / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (tmp_path / "m" / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="model.chat_template"):
        load_model(ModelConfig(name_or_path=str(tmp_path / "m"), chat_template=True))
    load_model(ModelConfig(name_or_path=str(tmp_path / "m"), chat_template=False))
