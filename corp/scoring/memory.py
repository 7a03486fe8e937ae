"""Choosing the decoding batch size from the memory the device has free.

The estimate is deliberately coarse and conservative: the key/value cache of a row for its
whole prompt + generation (twice, because growing a cache concatenates into a new copy),
one layer's prefill activations and attention scores, and the last-position logits.
The batch size is chosen once per scorer, not per call, because the batch a prompt lands in
changes floating-point rounding: a fixed size keeps repeated scores of one model identical.
"""

from __future__ import annotations

import torch
from transformers import PretrainedConfig

_FLOAT32 = 4


def free_bytes(device: torch.device) -> int:
    """Memory that can still be allocated on ``device`` (CUDA: driver's free; CPU: MemAvailable)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30  # unknown platform: assume a small machine


def row_bytes(config: PretrainedConfig, dtype: torch.dtype, prompt_len: int, new_tokens: int) -> int:
    """Peak bytes one decoding row needs (see the module docstring for what is counted)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = text.hidden_size
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    inter = getattr(text, "intermediate_size", 4 * hidden)
    size = torch.finfo(dtype).bits // 8
    total = prompt_len + new_tokens
    cache = 2 * text.num_hidden_layers * kv_heads * head_dim * total * size
    prefill = prompt_len * (4 * hidden + 3 * inter) * size + heads * prompt_len * prompt_len * _FLOAT32
    logits = 2 * text.vocab_size * _FLOAT32
    return 2 * cache + prefill + logits


def auto_batch_size(
    config: PretrainedConfig,
    dtype: torch.dtype,
    device: torch.device,
    prompt_len: int,
    new_tokens: int,
    examples: int,
    fraction: float = 0.5,
) -> int:
    """The largest batch whose rows fit in ``fraction`` of free memory, at most ``examples``."""
    budget = fraction * free_bytes(device)
    fit = int(budget // max(1, row_bytes(config, dtype, prompt_len, new_tokens)))
    return max(1, min(examples, fit))
