"""A thin, version-tolerant layer over Hugging Face key/value caches and causal-LM forwards.

transformers renamed the cache argument (``past_key_values`` -> ``cache``) and the layout of
``DynamicCache`` across releases; everything that depends on those names lives here so
the decoding loop does not.

``DynamicCache`` grows by concatenation, which copies every layer's whole cache at every
step (quadratic in the generated length; 15 % of a countdown member's scoring time on CPU).
Where the release allows it, full-attention layers are swapped for ``_Preallocated``
layers that write each step into a buffer sized for the whole call.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache, PreTrainedModel

try:
    from transformers.cache_utils import DynamicLayer
except ImportError:  # releases before per-layer caches: plain DynamicCache only
    DynamicLayer = None  # type: ignore[assignment,misc]


if DynamicLayer is not None:

    class _Preallocated(DynamicLayer):
        """A DynamicLayer whose keys/values are views of a buffer of fixed token capacity."""

        def __init__(self, capacity: int) -> None:
            super().__init__()
            self.capacity = capacity
            self._k: torch.Tensor | None = None
            self._v: torch.Tensor | None = None

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
            start = self.get_seq_length()
            end = start + key_states.shape[-2]
            if self._k is None:
                b, h, _, d = key_states.shape
                self._k = key_states.new_empty((b, h, self.capacity, d))
                self._v = value_states.new_empty((b, h, self.capacity, value_states.shape[-1]))
                self.device, self.is_initialized = key_states.device, True
            if end > self.capacity:
                raise RuntimeError(f"key/value cache capacity {self.capacity} exceeded ({end} tokens)")
            self._k[:, :, start:end] = key_states
            self._v[:, :, start:end] = value_states
            self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
            return self.keys, self.values

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self._k is not None:
                end = self.get_seq_length()
                self._k, self._v = self._k[indices], self._v[indices]
                self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]


class Forward:
    """``model(...)`` for greedy decoding: explicit positions, a caller-owned cache, last logits only.

    Where the model exposes its decoder and output embeddings, the head is applied to the
    last hidden state made contiguous: ``logits_to_keep=1`` slices a strided view, which
    ``F.linear`` turns into one matrix-vector product per row against the whole vocabulary
    (measured 1.1-1.5 s per 64-row prefill of the embedded model, vs ~0.15 s as one GEMM).
    Anything a causal-LM head adds after ``lm_head`` (soft-capping, scaling) is monotonic,
    so the greedy ``argmax`` is unchanged.
    """

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        params = inspect.signature(model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.keep_kw = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        usable = decoder is not None and head is not None and decoder is not model
        self.decoder = decoder if usable and self.cache_kw in inspect.signature(decoder.forward).parameters else None
        self.head = head

    def new_cache(self, capacity: int | None = None) -> DynamicCache:
        """An empty cache; with ``capacity`` (tokens per row), preallocated where every layer allows it."""
        try:
            cache = DynamicCache(config=self.model.config)
        except TypeError:  # releases whose DynamicCache takes no config
            return DynamicCache()
        layers = getattr(cache, "layers", None)
        if capacity and layers and all(type(layer) is DynamicLayer for layer in layers):
            cache.layers = [_Preallocated(capacity) for _ in layers]
        return cache

    def __call__(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        """Logits of the last position of every row (rows x vocab); ``cache`` is extended in place."""
        kwargs = {self.cache_kw: cache, "use_cache": True}
        if self.decoder is not None:
            out = self.decoder(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs)
            return self.head(out[0][:, -1, :].contiguous())
        if self.keep_kw:
            kwargs[self.keep_kw] = 1  # only the last position's logits are read
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs)
        return out.logits[:, -1, :]


def layers(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) of every layer, each batch x heads x tokens x head_dim."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))  # older releases


def replicate(
    forward: Forward, prefix: list[tuple[torch.Tensor, torch.Tensor]], rows: int, capacity: int | None = None
) -> DynamicCache:
    """A fresh cache holding a one-row prefix's keys/values for each of ``rows`` rows.

    Every row gets its own copy (attention kernels want one key/value row per query row);
    the shared one-row tensors stay untouched for the member's next batch.
    """
    cache = forward.new_cache(capacity)
    for idx, (k, v) in enumerate(prefix):
        cache.update(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1), idx)
    return cache


def select_rows(cache: DynamicCache, rows: torch.Tensor) -> None:
    """Keep only ``rows`` of the cache (finished rows leave the batch)."""
    cache.batch_select_indices(rows)
