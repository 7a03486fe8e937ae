"""Compute dtype: auto-detection, fp32 masters under bf16 live weights, export, batch invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from corp.models.loading import ModelConfig, load_model, save_model
from corp.models.precision import compute_dtype, cpu_flags, resolve_dtype, set_compute_dtype
from corp.perturb.direction import Direction
from corp.perturb.noise import NoiseSource
from corp.perturb.space import ParameterSpace
from corp.scoring.scorer import Scorer
from corp.tasks.arithmetic import ArithmeticConfig, ArithmeticTask


def fp32_model(model_dir, scale: float | None = None):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    model.requires_grad_(False)
    if scale is not None:  # large random weights: varied text instead of one repeated token
        torch.manual_seed(0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" not in name:
                    p.normal_(0.0, scale)
    return model


def test_auto_picks_bf16_exactly_where_the_cpu_has_bf16_units():
    with open("/proc/cpuinfo") as f:
        text = f.read()
    native = any(flag in text.split() for flag in ("avx512_bf16", "amx_bf16", "bf16"))
    assert resolve_dtype("auto", "cpu") == (torch.bfloat16 if native else torch.float32)
    assert bool(cpu_flags()) == ("flags" in text or "Features" in text)
    assert resolve_dtype("float32", "cpu") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16


def test_bad_dtypes_are_named():
    with pytest.raises(ValueError, match="model.dtype='fp8'"):
        ModelConfig(dtype="fp8")
    with pytest.raises(ValueError, match="model.export_dtype='auto'"):
        ModelConfig(export_dtype="auto")


def test_bf16_keeps_one_dimensional_parameters_in_fp32(tiny_model_dir):
    model = fp32_model(tiny_model_dir)
    norm = model.model.norm.weight.detach().clone()
    kept = set_compute_dtype(model, torch.bfloat16)
    for name, p in model.named_parameters():
        assert p.dtype == (torch.float32 if p.ndim == 1 else torch.bfloat16), name
        assert (name in kept) == (p.ndim == 1)
    assert torch.equal(model.model.norm.weight, norm)  # the original, not its bf16 rounding
    assert compute_dtype(model) == torch.bfloat16
    ids = torch.tensor([[1, 2, 3, 4]])
    hidden = model.model(input_ids=ids).last_hidden_state
    assert hidden.dtype == torch.bfloat16  # the fp32 norm hands bf16 on
    assert torch.isfinite(model(input_ids=ids).logits.float()).all()


def test_linear_biases_stay_fp32_and_still_act():
    layer = torch.nn.Linear(8, 4)
    net = torch.nn.Sequential(layer)
    bias = layer.bias.detach().clone()
    set_compute_dtype(net, torch.bfloat16)
    assert layer.weight.dtype == torch.bfloat16 and layer.bias.dtype == torch.float32
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    before = net(x)
    with torch.no_grad():
        layer.bias += 1e-3  # far below bf16 spacing near 1.0 as a parameter, kept in fp32
    assert torch.equal(layer.bias, bias + 1e-3)
    assert before.dtype == torch.bfloat16 and net(x).dtype == torch.bfloat16


@pytest.mark.parametrize("mode", ["chunked", "table"])
def test_bf16_members_are_the_rounding_of_the_fp32_centre_plus_noise(tiny_model_dir, mode):
    model = fp32_model(tiny_model_dir)
    space = ParameterSpace(model, NoiseSource(mode))
    reference = ParameterSpace(fp32_model(tiny_model_dir), NoiseSource(mode))  # all fp32
    set_compute_dtype(model, torch.bfloat16)
    space.restore()
    step = Direction(np.array([11, 12]), np.array([2e-3, -1e-3]))
    space.commit(step)
    reference.commit(step)
    for name in space.names:  # the committed centre is rebuilt in fp32, identical to an fp32 run
        assert torch.equal(space.centre_state()[name], reference.centre_state()[name]), name
    member = Direction.from_seed(5, 1e-3)
    with space.perturbed(member), reference.perturbed(member):
        live_fp32 = dict(reference.model.named_parameters())
        for name, p in space.params:
            want = live_fp32[name].detach()
            if p.ndim == 1:  # norm gains: the perturbation is applied exactly, not rounded away
                assert p.dtype == torch.float32 and torch.equal(p, want), name
            else:
                assert p.dtype == torch.bfloat16 and torch.equal(p, want.to(torch.bfloat16)), name
        norm = dict(space.params)["model.norm.weight"]
        assert not torch.equal(norm, space.centre_state()["model.norm.weight"])
    for name, p in space.params:  # restore is bit-exact
        assert torch.equal(p, space.centre_state()[name].to(p.dtype)), name


@pytest.mark.parametrize("export_dtype", ["float32", "bfloat16"])
def test_export_writes_the_fp32_centre_in_the_chosen_dtype(tiny_model_dir, tmp_path, export_dtype):
    model = fp32_model(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    space = ParameterSpace(model, NoiseSource())
    set_compute_dtype(model, torch.bfloat16)
    space.commit(Direction.from_seed(3, 1e-2))
    save_model(model, tok, space.centre_state(), export_dtype, tmp_path / "model")
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype="auto")
    assert saved.dtype == getattr(torch, export_dtype)
    params = dict(saved.named_parameters())
    for name, centre in space.centre_state().items():
        assert torch.equal(params[name], centre.to(params[name].dtype)), name
    assert torch.equal(saved.lm_head.weight, saved.model.embed_tokens.weight)  # still tied


class LetterStop(ArithmeticTask):
    """Arithmetic prompts; decoding stops at letters that random-weight text soon produces."""

    stop = ("e", "a")
    max_new_tokens = 8


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_answers_do_not_depend_on_the_batch_layout(tiny_model_dir, dtype):
    """Whole, halves, shuffled, batch sizes 1, 8 and 64: bitwise identical completions."""
    model = fp32_model(tiny_model_dir, scale=0.3)
    set_compute_dtype(model, dtype)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.padding_side = "left"
    n = 16
    few = [{"prompt": "What is 3 + 4? Reply with only the number.", "response": "7"}]
    task = LetterStop(ArithmeticConfig(support_size=n, probe_size=2, test_size=2, few_shot=few))
    splits = task.splits({"support": n, "probe": 2, "test": 2}, seed=0)
    scorer = Scorer(model, tok, task, splits, chat_template=False, batch_size=64)
    whole = scorer.decode("support")
    assert len(set(whole)) > 3  # varied text, so a layout effect would show
    idx = np.arange(n)
    perm = np.random.default_rng(1).permutation(n)
    assert scorer.decode("support", idx[: n // 2]) + scorer.decode("support", idx[n // 2 :]) == whole
    assert scorer.decode("support", perm) == [whole[i] for i in perm]
    for batch_size in (1, 8, 64):
        scorer.batch_size = batch_size
        assert scorer.decode("support") == whole, batch_size


def test_load_model_computes_in_the_configured_dtype(tiny_model_dir):
    model, _ = load_model(ModelConfig(name_or_path=str(tiny_model_dir), chat_template=False, dtype="bfloat16"))
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16
    assert model.model.norm.weight.dtype == torch.float32
    master, _ = load_model(ModelConfig(name_or_path=str(tiny_model_dir), chat_template=False, dtype="bfloat16"),
                           compute=False)  # fmt: skip
    assert all(p.dtype == torch.float32 for p in master.parameters())


@pytest.mark.slow
def test_a_bf16_run_records_its_dtype_and_exports_the_fp32_centre(tiny_model_dir, tmp_path):
    from tests.conftest import TINY_SIGMAS, tiny_run

    results = tiny_run(tiny_model_dir, tmp_path, ["model.dtype=bfloat16", TINY_SIGMAS])
    assert results["dtype"] == "bfloat16"
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype="auto")
    assert saved.dtype == torch.float32
    assert all(torch.isfinite(p).all() for p in saved.parameters())
