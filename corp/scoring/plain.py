"""The reference path: ``model.generate`` on left-padded batches in the given order.

Nothing here is used by a run. It is what the optimised scorer is measured and tested
against (``benchmarks/scorer_throughput.py``, ``tests/test_scorer.py``): same prompts,
same batch size, same greedy decoding, Hugging Face's own stop-string handling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase


@torch.no_grad()
def plain_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    stop: Sequence[str],
    batch_size: int,
) -> tuple[list[str], int]:
    """Decoded completions (special tokens skipped, not cut at stop strings) and generated token count."""
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        stop_strings=list(stop) or None,
    )
    pad = tokenizer.pad_token_id
    out: list[str] = []
    tokens = 0
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        width = max(len(p) for p in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, p in enumerate(batch):
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        gen = model.generate(
            input_ids=ids.to(model.device),
            attention_mask=mask.to(model.device),
            generation_config=config,
            tokenizer=tokenizer,
        )
        new = gen[:, width:].cpu()
        tokens += int((new != pad).sum())
        out += tokenizer.batch_decode(new, skip_special_tokens=True)
    return out, tokens
