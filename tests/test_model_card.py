"""The exported model as an artifact: its model card, the W&B artifacts, and push_to_hub up to the
network call (the hub client's two methods are replaced; everything before them runs for real)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from corp.errors import UserError
from corp.model_card import model_card, push_to_hub, run_command
from corp.results import Results
from tests.conftest import TINY_BUDGET, TINY_SIGMAS, compose_config
from tests.test_launchers import wandb_records


def test_the_model_folder_has_a_card_with_results_direction_and_command(tiny_results):
    out, res = tiny_results
    card = (out / "model" / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["library_name"] == "transformers" and "corp" in header["tags"]
    assert "base_model" not in header  # a local folder is no hub id
    test = Results.load(out).splits["test"]
    assert f"| test | {test.n} | {test.with_se('base')} | {test.with_se('final')} | {test.with_se('gain')} |" in card
    direction = json.loads((out / "direction.json").read_text())["direction"]
    first = f"| {direction['seeds'][0]} | {direction['coeffs'][0]:.6g} |"
    assert first in card and f"{len(direction['seeds'])} components" in card
    assert res["provenance"]["model"] in card and res["provenance"]["git"]["commit"][:12] in card
    assert "python train.py" in card


def test_a_hub_base_model_is_named_in_the_header_and_the_command_comes_from_hydras_overrides(tiny_results, tmp_path):
    out, _ = tiny_results
    results = Results.load(out)
    results.model = "HuggingFaceTB/SmolLM2-135M-Instruct"
    card = model_card(results, json.loads((out / "direction.json").read_text()), "python train.py seed=1")
    assert yaml.safe_load(card.split("---\n")[1])["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed=1", "task.reward_fn=[a.py:f,b.py:g]"]))
    assert run_command(tmp_path) == "python train.py seed=1 'task.reward_fn=[a.py:f,b.py:g]'"


def test_push_to_hub_uploads_the_model_folder(tiny_results, monkeypatch):
    from huggingface_hub import HfApi

    out, _ = tiny_results
    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw)) or "https://hub/c/1")
    assert push_to_hub(out / "model", "me/tiny-corp") == "https://hub/c/1"
    (create, upload) = calls
    assert create == ("create", "me/tiny-corp", {"repo_type": "model", "exist_ok": True})
    assert upload[1]["folder_path"] == str(out / "model") and upload[1]["repo_id"] == "me/tiny-corp"


def test_push_to_hub_needs_the_exported_model(tmp_path):
    from corp.config import validate

    with pytest.raises((ValueError, UserError), match=r"push_to_hub='me/x' uploads model/.*export_model=false"):
        validate(compose_config([f"output_dir={tmp_path}", "push_to_hub=me/x", "export_model=false"]))


@pytest.mark.slow
def test_a_run_pushes_its_model_and_logs_the_artifacts_to_wandb(tiny_model_dir, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    from corp.run import run

    uploaded = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: None)
    monkeypatch.setattr(
        HfApi, "upload_folder", lambda self, **kw: uploaded.append({p.name for p in Path(kw["folder_path"]).iterdir()})
    )
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run(compose_config([f"model.name_or_path={tiny_model_dir}", "logger=wandb", "logger.wandb.log_model=true",
                        f"output_dir={tmp_path}", "push_to_hub=me/tiny-corp", *TINY_BUDGET, TINY_SIGMAS]))  # fmt: skip
    assert len(uploaded) == 1 and {"README.md", "config.json", "model.safetensors"} <= uploaded[0]
    (run_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    artifacts = {
        r.artifact.type: r.artifact
        for r in wandb_records(run_file)
        if r.WhichOneof("record_type") == "artifact" and r.artifact.type != "run_table"
    }  # tables are too
    assert set(artifacts) == {"direction", "model"}
    files = {t: {e.path for e in a.manifest.contents} for t, a in artifacts.items()}
    assert files["direction"] == {"results.json", "direction.json"}
    assert {"README.md", "model.safetensors"} <= files["model"]
