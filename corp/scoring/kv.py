"""A thin, version-tolerant layer over Hugging Face key/value caches and causal-LM forwards.

transformers renamed the cache argument (``past_key_values`` -> ``cache``) and the layout of
``DynamicCache`` across releases; everything that depends on those names lives here so
the decoding loop does not.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache, PreTrainedModel


class Forward:
    """``model(...)`` for greedy decoding: explicit positions, a caller-owned cache, last logits only."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        params = inspect.signature(model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.keep_kw = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)

    def new_cache(self) -> DynamicCache:
        try:
            return DynamicCache(config=self.model.config)
        except TypeError:  # releases whose DynamicCache takes no config
            return DynamicCache()

    def __call__(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        """Logits of the last position of every row (rows x vocab); ``cache`` is extended in place."""
        kwargs = {self.cache_kw: cache, "use_cache": True}
        if self.keep_kw:
            kwargs[self.keep_kw] = 1  # only the last position's logits are read
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs)
        return out.logits[:, -1, :]


def layers(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) of every layer, each batch x heads x tokens x head_dim."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))  # older releases


def replicate(forward: Forward, prefix: list[tuple[torch.Tensor, torch.Tensor]], rows: int) -> DynamicCache:
    """A fresh cache holding a one-row prefix's keys/values for each of ``rows`` rows.

    Every row gets its own copy: the cache grows by concatenation per row, and a copy
    keeps the shared prefix tensors untouched for the next batch of the same member.
    """
    cache = forward.new_cache()
    for idx, (k, v) in enumerate(prefix):
        cache.update(k.expand(rows, -1, -1, -1).contiguous(), v.expand(rows, -1, -1, -1).contiguous(), idx)
    return cache


def select_rows(cache: DynamicCache, rows: torch.Tensor) -> None:
    """Keep only ``rows`` of the cache (finished rows leave the batch)."""
    cache.batch_select_indices(rows)
