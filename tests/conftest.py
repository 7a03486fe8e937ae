"""Shared fixtures: composed configs, the embedded model's converted copy, a tiny model."""

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from corp.config import register_configs
from corp.models.loading import ModelConfig, resolve

ROOT = Path(__file__).resolve().parents[1]
register_configs()


def compose_config(overrides: list[str]):
    """The real config, composed exactly as `python train.py <overrides>` would."""
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return compose(config_name="config", overrides=overrides)


def compose_with_hydra(overrides: list[str]):
    """The real config with its `hydra` node, as `python train.py <overrides>` composes it."""
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return compose(config_name="config", overrides=["output_dir=/tmp/unused", *overrides], return_hydra_config=True)


@pytest.fixture
def default_config(tmp_path):
    """The settings `python train.py` runs: conf/ composed, typed and checked (output under tmp_path)."""
    from corp.config import validate

    return validate(compose_config([f"output_dir={tmp_path}"]))


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    """The embedded SmolLM2 converted to safetensors (done once, then cached)."""
    return Path(resolve(ModelConfig()))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_dir) -> Path:
    """A 2-layer Llama with random weights and the embedded model's real tokenizer."""
    out = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(embedded_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


TINY_BUDGET = [  # first in an override list: a test's own task= comes after it and wins
    "task=arithmetic",  # short prompts; the default task (countdown) carries two worked examples
    "perturbation.population_size=4",
    "task.support_size=8",
    "task.probe_size=8",
    "task.test_size=8",
    "consolidation.quantiles=[0.5]",
    "consolidation.betas=[5.0]",
    "consolidation.scales=[1.0,4.0]",
    "consolidation.stage2_rounds=1",
    "consolidation.local_members=4",
]
TINY_SIGMAS = "perturbation.sigmas=[0.5,1.0]"  # large, so the random tiny model's greedy outputs change


def tiny_run(model_dir, out, extra=(), budget=TINY_BUDGET):
    from corp.run import run

    overrides = [f"model.name_or_path={model_dir}", "logger=csv", f"output_dir={out}", *budget, *extra]
    return run(compose_config(overrides)).to_json()  # as results.json holds it: tests compare the two


@pytest.fixture(scope="session")
def tiny_results(tiny_model_dir, tmp_path_factory):
    """One CoRP run of the tiny model, shared by the end-to-end tests."""
    out = tmp_path_factory.mktemp("tiny-run")
    return out, tiny_run(tiny_model_dir, out, [TINY_SIGMAS])


def vowel_task(folder: Path, n: int) -> list[str]:
    """Overrides for a custom task of ``n`` prompts on which the tiny model's members get graded
    rewards (the share of vowels: fixtures/signal_rewards.py)."""
    data = folder / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Say something about {i}."}) + "\n" for i in range(n)))
    reward = ROOT / "tests" / "fixtures" / "signal_rewards.py"
    return ["task=custom", f"task.data_files={data}", f"task.reward_fn={reward}:vowel_share",
            "task.max_new_tokens=8", "task.solved_at=0.2"]  # fmt: skip
