"""Model resolution: the embedded GGUF conversion, local paths, hub ids and their errors."""

import json

import pytest

from corp.models.loading import ModelConfig, resolve


def test_embedded_model_is_converted_once_to_plain_safetensors(embedded_dir):
    config = json.loads((embedded_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (embedded_dir / "model.safetensors").exists() and (embedded_dir / "tokenizer.json").exists()
    assert resolve(ModelConfig()) == embedded_dir  # later runs load the cache


def test_local_dir_and_hub_id_resolve(tiny_model_dir):
    assert resolve(ModelConfig(name_or_path=str(tiny_model_dir))) == tiny_model_dir
    assert (
        resolve(ModelConfig(name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct"))
        == "HuggingFaceTB/SmolLM2-135M-Instruct"
    )


@pytest.mark.parametrize("bad", ["/nonexistent/model.gguf", "./no/such/dir", "a/b/c"])
def test_missing_paths_are_named_in_the_error(bad, tmp_path):
    with pytest.raises(FileNotFoundError, match="model.name_or_path"):
        resolve(ModelConfig(name_or_path=bad, cache_dir=str(tmp_path)))


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        resolve(ModelConfig(name_or_path=str(tmp_path)))
