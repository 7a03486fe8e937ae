"""A run folder alone says which code, packages, data and weights produced it (corp.provenance), and
samples.jsonl covers every evaluated split with example ids and the prompts as the model read them."""

from __future__ import annotations

import json

import torch
import transformers
from transformers import AutoModelForCausalLM

from corp.provenance import FINGERPRINTS, ROOT, git_state, model_fingerprint
from corp.tasks.base import SPLITS


def test_results_json_records_code_packages_data_and_weights(tiny_results, tiny_model_dir):
    out, res = tiny_results
    p = res["provenance"]
    assert p["git"] == git_state() and len(p["git"]["commit"]) == 40 and isinstance(p["git"]["dirty"], bool)
    assert p["versions"]["torch"] == torch.__version__ and p["versions"]["transformers"] == transformers.__version__
    assert p["versions"]["corp"] and p["versions"]["python"] and p["task_version"] == 1
    assert set(p["data"]) == set(SPLITS) and len(set(p["data"].values())) == 3  # the splits hold different examples
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert p["model"] == model_fingerprint(model, "not/a/local/path", None)  # hashed afresh: the same digest


def test_samples_cover_every_split_with_ids_and_the_decoded_prompt(tiny_results):
    out, res = tiny_results
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    for split in SPLITS:
        mine = [r for r in rows if r["split"] == split]
        assert len(mine) == res[split]["n"] and len({r["id"] for r in mine}) == len(mine)
        assert sum(r["final_reward"] for r in mine) / len(mine) == res[split]["final_reward"]
    assert all(r["prompt"] in r["prompt_text"] and r["prompt_text"] != r["prompt"] for r in rows)  # chat template
    assert not {r["id"] for r in rows if r["split"] == "test"} & {r["id"] for r in rows if r["split"] == "support"}


def test_the_model_fingerprint_is_cached_by_file_and_follows_the_weights(tiny_model_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    first = model_fingerprint(model, tiny_model_dir, tmp_path)
    assert list(json.loads((tmp_path / FINGERPRINTS).read_text()).values()) == [first]
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert model_fingerprint(model, tiny_model_dir, tmp_path) == first  # same files: the cached digest, no hashing
    assert model_fingerprint(model, tiny_model_dir, None) != first  # other weights hash differently
    copy = tmp_path / "copy"
    model.save_pretrained(copy)
    assert (
        model_fingerprint(model, copy, tmp_path) != first
        and len(json.loads((tmp_path / FINGERPRINTS).read_text())) == 2
    )


def test_git_state_is_empty_outside_a_checkout(tmp_path):
    assert git_state(tmp_path) == {} and git_state(ROOT)["commit"]
