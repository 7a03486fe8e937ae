"""Greedy decoding of token prompts, batched, with a shared prompt prefix encoded once.

What makes it cheaper than ``model.generate`` on the same batches:

- a prefix that every prompt starts with (system prompt, few-shot block) is encoded once
  per call on a single row and its keys/values are copied into each batch, so prefill only
  runs over each prompt's own suffix. A call covers one set of weights (one member): the
  prefix cache never outlives it, so it is never shared between perturbed models;
- a row leaves the batch once it is finished (EOS or stop string), so the remaining steps
  run on the rows still decoding instead of on the whole batch until the slowest is done;
- only the last position's logits are computed, and nothing but ``argmax`` is applied.

Prompts are laid out as ``[prefix | left padding | suffix]`` with an attention mask over
the padding and explicit position ids (count of real tokens before each one), so every
row sees exactly the positions it would see alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from corp.scoring import kv
from corp.scoring.stops import StopChecker

# A shared prefix is encoded by one extra single-row forward pass, which streams all the
# weights like a decoding step does; a 1-token prefix saves less than that costs.
MIN_SHARED_PREFIX = 2
# Finished rows are dropped from the batch when they are at least this share of it: each
# drop copies the whole cache, so a single finished row in a large batch is left to ride along.
COMPACT_SHARE = 0.25


def shared_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Length of the longest common token prefix, leaving every prompt at least one own token."""
    if not prompts:
        return 0
    first = prompts[0]
    n = min(len(p) for p in prompts) - 1  # the last prompt token must be run per row (its logits)
    for p in prompts[1:]:
        k = 0
        while k < n and p[k] == first[k]:
            k += 1
        n = k
        if n == 0:
            break
    return max(n, 0)


@dataclass
class Prefix:
    """Keys/values of a shared prompt prefix, encoded on one row with the current weights."""

    length: int
    layers: list[tuple[torch.Tensor, torch.Tensor]]


class GreedyDecoder:
    """Greedy completions (token ids) of token prompts with the model's current weights."""

    def __init__(
        self,
        model: PreTrainedModel,
        stop: StopChecker,
        pad_id: int,
        max_new_tokens: int,
        min_shared_prefix: int = MIN_SHARED_PREFIX,
    ) -> None:
        self.forward = kv.Forward(model)
        self.stop, self.pad_id, self.max_new_tokens = stop, int(pad_id), int(max_new_tokens)
        self.min_shared_prefix = min_shared_prefix
        self.device = model.device

    @torch.no_grad()
    def encode_prefix(self, prompts: Sequence[Sequence[int]]) -> Prefix | None:
        """The prefix all ``prompts`` share, encoded with the current weights; None when not worth it."""
        n = shared_prefix_length(prompts) if len(prompts) > 1 else 0  # one prompt: nothing to share
        if n < self.min_shared_prefix:
            return None
        ids = torch.tensor([list(prompts[0][:n])], device=self.device)
        mask = torch.ones_like(ids)
        positions = torch.arange(n, device=self.device)[None]
        cache = self.forward.new_cache()
        self.forward(ids, mask, positions, cache)
        return Prefix(n, kv.layers(cache))

    @torch.no_grad()
    def decode(self, prompts: Sequence[Sequence[int]], prefix: Prefix | None = None) -> list[list[int]]:
        """Generated token ids of each prompt (up to and including the finishing token)."""
        p = prefix.length if prefix is not None else 0
        rows = len(prompts)
        suffixes = [list(q[p:]) for q in prompts]
        width = max(len(s) for s in suffixes)
        ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((rows, p + width), dtype=torch.long)
        mask[:, :p] = 1
        for r, s in enumerate(suffixes):
            ids[r, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[r, p + width - len(s) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp_(min=0)
        ids, mask, positions = ids.to(self.device), mask.to(self.device), positions.to(self.device)
        capacity = p + width + self.max_new_tokens
        if prefix is not None:
            cache = kv.replicate(self.forward, prefix.layers, rows, capacity)
        else:
            cache = self.forward.new_cache(capacity)
        logits = self.forward(ids, mask, positions[:, p:], cache)
        next_pos = positions[:, -1:] + 1

        out: list[list[int]] = [[] for _ in range(rows)]
        live = list(range(rows))  # prompt index of each row still in the batch
        running = [True] * rows  # per batch row: not yet finished
        for step in range(self.max_new_tokens):
            tokens = logits.argmax(-1)
            for row, token in enumerate(tokens.tolist()):
                if running[row]:
                    out[live[row]].append(token)
            if step + 1 == self.max_new_tokens:
                break
            pending = [r for r, run in enumerate(running) if run]
            for r, finished in zip(pending, self.stop.finished([out[live[r]] for r in pending])):
                running[r] = not finished
            still = [r for r, run in enumerate(running) if run]
            if not still:
                break
            if len(live) - len(still) >= max(1, COMPACT_SHARE * len(live)):
                keep = torch.tensor(still, device=self.device)
                kv.select_rows(cache, keep)
                mask, tokens, next_pos = mask[keep], tokens[keep], next_pos[keep]
                live = [live[r] for r in still]
                running = [True] * len(live)
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
            logits = self.forward(tokens[:, None], mask, next_pos, cache)
            next_pos = next_pos + 1
        return out
