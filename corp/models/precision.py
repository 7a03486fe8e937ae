"""Which dtype a model computes in, and how its weights are kept in it.

``model.dtype=auto`` picks bfloat16 where the hardware multiplies bf16 matrices natively
(CUDA; x86 CPUs with ``avx512_bf16`` or AMX; Arm CPUs with ``bf16``) and float32 elsewhere:
on a CPU without those units torch emulates bf16 products, tens of times slower than fp32.

Master weights stay fp32 (``ParameterSpace`` keeps the base and the centre), and a member's
live weights are the bf16 rounding of centre + sigma * eps. Rounding therefore never
accumulates, and a committed direction rebuilds exactly.

One class of parameter cannot live in bf16 at all: the spacing of bf16 numbers near 1.0 is
2**-7 = 0.0078, larger than any sigma we use, so a norm gain of 1.0 perturbed by 1e-3 rounds
back to exactly 1.0 in every member, and the perturbation of those tensors is silently lost
(``benchmarks/bf16_perturbation.py`` measures it per parameter class). The remedy here: every
1-D parameter (norm gains, biases) stays fp32, which costs nothing (they are a fraction of a
percent of the weights), and its module computes in fp32 and hands bf16 to the next layer.
The product is then rounded per activation, whose values vary, instead of the parameter being
rounded once to one value; the perturbation's effect survives on average.
"""

from __future__ import annotations

import types
from functools import cache

import torch
import torch.nn.functional as F

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX-512 / AMX, Arm (Features line)


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # read from Linux's /proc/cpuinfo; elsewhere (macOS) float32, to be safe
        return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)
    return False


def resolve_dtype(name: str, device: torch.device | str) -> torch.dtype:
    """``model.dtype`` as a torch dtype: ``auto`` is bf16 where native (see the module docstring)."""
    if name == "auto":
        return torch.bfloat16 if native_bf16(torch.device(device)) else torch.float32
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def compute_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype most of the model's weights compute in (its fp32 1-D parameters aside)."""
    sizes: dict[torch.dtype, int] = {}
    for p in model.parameters():
        sizes[p.dtype] = sizes.get(p.dtype, 0) + p.numel()
    return max(sizes, key=sizes.get)


def _cast_output(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook of an fp32 module: its output goes on in the dtype it received."""
    received = next((a.dtype for a in args if torch.is_tensor(a) and a.is_floating_point()), None)
    return output if received is None or output.dtype == received else output.to(received)


def _linear_fp32_bias(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``nn.Linear.forward`` with a low-precision weight and an fp32 bias, added in fp32."""
    return (F.linear(x, self.weight).float() + self.bias).to(x.dtype)


def set_compute_dtype(model: torch.nn.Module, dtype: torch.dtype) -> list[str]:
    """Cast ``model`` to ``dtype``, keeping every 1-D parameter in fp32 (see the module docstring).

    Call it once, on a model loaded in fp32. Returns the names of the parameters kept in fp32.
    """
    if dtype == torch.float32:
        return []
    keep = {id(p): p.data for p in model.parameters() if p.ndim == 1 and p.is_floating_point()}
    kept: list[str] = []
    model.to(dtype)
    for module_name, module in model.named_modules():
        own = list(module.named_parameters(recurse=False))
        mine = [(n, p) for n, p in own if id(p) in keep]
        if not mine:
            continue
        for n, p in mine:
            p.data = keep[id(p)]  # the fp32 original, not its bf16 rounding
            kept.append(f"{module_name}.{n}" if module_name else n)
        if len(mine) == len(own):  # a norm (gains/biases only): compute in fp32, hand on the input's dtype
            module.register_forward_hook(_cast_output)
        elif isinstance(module, torch.nn.Linear) and [n for n, _ in mine] == ["bias"]:
            module.forward = types.MethodType(_linear_fp32_bias, module)
        else:  # a layer we cannot split safely: all of it in the compute dtype
            for _, p in mine:
                p.data = p.data.to(dtype)
            kept = kept[: -len(mine)]
    return kept
