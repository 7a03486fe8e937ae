"""Batched greedy decoding of a task split on the live model, with per-example outcomes."""

from __future__ import annotations

import time

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from corp.scores import Scores
from corp.scoring.greedy import GreedyDecoder
from corp.scoring.memory import auto_batch_size
from corp.scoring.stops import StopChecker
from corp.tasks.base import Example, Task


def cut(text: str, stops: tuple[str, ...]) -> str:
    """Truncate after the first stop string, so a completion never depends on how far decoding ran."""
    ends = [text.find(s) + len(s) for s in stops if s in text]
    return text[: min(ends)] if ends else text


class Scorer:
    """Scores whatever weights the model currently holds on a task's splits.

    Prompts are tokenised once per split. Each call decodes length-sorted batches with
    ``GreedyDecoder``: a prefix shared by all the call's prompts is encoded once (per call,
    hence per member), and rows leave their batch when they produce EOS or a stop string.
    ``batch_size < 1`` picks the batch size from free memory once, at construction.

    ``tokens_generated``, ``examples_decoded`` and ``decode_seconds`` accumulate over calls, so
    a caller can log throughput for any interval by differencing them.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        task: Task,
        splits: dict[str, list[Example]],
        chat_template: bool,
        batch_size: int,
    ) -> None:
        self.tokenizer, self.task = tokenizer, task
        self.splits = splits
        self.examples_decoded = 0
        self.tokens_generated = 0
        self.decode_seconds = 0.0
        self._encoded = {name: [self._encode(ex, chat_template) for ex in exs] for name, exs in splits.items()}
        if batch_size is None or batch_size < 1:
            longest = max((len(p) for prompts in self._encoded.values() for p in prompts), default=1)
            largest = max((len(p) for p in self._encoded.values()), default=1)
            batch_size = auto_batch_size(
                model.config, model.dtype, model.device, longest, task.max_new_tokens, max(1, largest)
            )
        self.batch_size = int(batch_size)
        self.stop = StopChecker(tokenizer, [tokenizer.eos_token_id], task.stop)
        self.model = model

    @property
    def model(self) -> PreTrainedModel:
        return self._model

    @model.setter
    def model(self, model: PreTrainedModel) -> None:
        """Score another model from now on (the decoder holds model-specific forward state)."""
        self._model = model
        self.decoder = GreedyDecoder(model, self.stop, self.tokenizer.pad_token_id, self.task.max_new_tokens)

    def _encode(self, example: Example, chat_template: bool) -> list[int]:
        if chat_template:
            text = self.tokenizer.apply_chat_template(
                self.task.messages(example), tokenize=False, add_generation_prompt=True
            )
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(self.task.plain_prompt(example))["input_ids"]

    def prompt_text(self, split: str, index: int) -> str:
        """One prompt as the model reads it (chat template, system prompt and few-shot turns included)."""
        return self.tokenizer.decode(self._encoded[split][index])

    def prompt_ids(self, split: str, indices: np.ndarray | None = None) -> list[list[int]]:
        """Token ids of the split's prompts (in ``indices`` order)."""
        idx = np.arange(len(self._encoded[split])) if indices is None else np.asarray(indices)
        return [self._encoded[split][i] for i in idx]

    @torch.no_grad()
    def decode(self, split: str, indices: np.ndarray | None = None) -> list[str]:
        """Greedy completions of the split's examples (in ``indices`` order), cut at the first stop string."""
        start = time.perf_counter()
        prompts = self.prompt_ids(split, indices)
        out: list[str] = [""] * len(prompts)
        if prompts:
            # The prefix is encoded with the weights the model holds now: it lives for this call only.
            prefix = self.decoder.encode_prefix(prompts)
            order = sorted(range(len(prompts)), key=lambda k: len(prompts[k]))
            pad = self.tokenizer.pad_token_id
            for first in range(0, len(order), self.batch_size):
                batch = order[first : first + self.batch_size]
                generated = self.decoder.decode([prompts[k] for k in batch], prefix)
                texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
                for k, ids, text in zip(batch, generated, texts):
                    self.tokens_generated += sum(t != pad for t in ids)
                    out[k] = cut(text, self.task.stop)
        self.examples_decoded += len(prompts)
        self.decode_seconds += time.perf_counter() - start
        return out

    def _rewards(self, completions: list[str], examples: list[Example]) -> np.ndarray:
        """One batched ``rewards`` call per scored call: code tasks run their programs in parallel
        and a custom reward function sees the whole batch at once."""
        rewards = np.asarray(self.task.rewards(completions, examples), dtype=np.float64)
        if rewards.shape != (len(completions),):
            raise ValueError(
                f"task {self.task.name!r}: rewards() returned shape {rewards.shape} "
                f"for {len(completions)} completions; expected one float per completion"
            )
        return rewards

    def score(self, split: str, indices: np.ndarray | None = None) -> Scores:
        """The live model's completions of the split's examples (in ``indices`` order) and their scores."""
        completions = self.decode(split, indices)
        idx = np.arange(len(self.splits[split])) if indices is None else np.asarray(indices)
        examples = [self.splits[split][i] for i in idx]
        rewards = self._rewards(completions, examples)
        correct = np.array([self.task.is_correct(c, ex) for c, ex in zip(completions, examples)], dtype=bool)
        answers = [self.task.extract(c) for c in completions]
        parts = {k: np.asarray(v, dtype=np.float64) for k, v in self.task.reward_parts(completions, examples).items()}
        return Scores(rewards, correct, answers, completions, parts=parts or None)
