"""Batched greedy decoding of a task split on the live model, with per-example outcomes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from corp.consolidate.base import Scores
from corp.tasks.base import Example, Task


@dataclass
class Decoded:
    """Everything one model produced on a list of examples."""

    scores: Scores
    completions: list[str]
    answers: list[str | None]


class Scorer:
    """Scores whatever weights the model currently holds on a task's splits.

    Prompts are tokenised once per split; batches are formed from length-sorted
    prompts so padding stays small, and decoding of a batch stops as soon as every
    sequence has produced EOS or one of the task's stop strings.
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
        self.model, self.tokenizer, self.task = model, tokenizer, task
        self.splits = splits
        self.batch_size = batch_size
        self.example_evals = 0
        self.tokens_generated = 0
        self._encoded = {name: [self._encode(ex, chat_template) for ex in exs] for name, exs in splits.items()}
        self.generation_config = GenerationConfig(
            max_new_tokens=task.max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            stop_strings=list(task.stop) or None,
        )

    def _encode(self, example: Example, chat_template: bool) -> list[int]:
        if chat_template:
            text = self.tokenizer.apply_chat_template(
                self.task.messages(example), tokenize=False, add_generation_prompt=True
            )
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(self.task.plain_prompt(example))["input_ids"]

    def prompt_text(self, split: str, index: int) -> str:
        return self.tokenizer.decode(self._encoded[split][index])

    @torch.no_grad()
    def decode(self, split: str, indices: np.ndarray | None = None) -> list[str]:
        """Greedy completions of the split's examples (in ``indices`` order)."""
        idx = np.arange(len(self._encoded[split])) if indices is None else np.asarray(indices)
        prompts = [self._encoded[split][i] for i in idx]
        order = sorted(range(len(prompts)), key=lambda k: len(prompts[k]))
        out: list[str] = [""] * len(prompts)
        pad = self.tokenizer.pad_token_id
        device = self.model.device
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = max(len(prompts[k]) for k in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, k in enumerate(batch):
                ids[row, width - len(prompts[k]) :] = torch.tensor(prompts[k])
                mask[row, width - len(prompts[k]) :] = 1
            gen = self.model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                generation_config=self.generation_config,
                tokenizer=self.tokenizer,
            )
            new = gen[:, width:].cpu()
            self.tokens_generated += int((new != pad).sum())
            for row, k in enumerate(batch):
                out[k] = self._cut(self.tokenizer.decode(new[row], skip_special_tokens=True))
        self.example_evals += len(prompts)
        return out

    def _cut(self, text: str) -> str:
        """Truncate after the first stop string, so a completion never depends on its batch mates."""
        ends = [text.find(s) + len(s) for s in self.task.stop if s in text]
        return text[: min(ends)] if ends else text

    def score(self, split: str, indices: np.ndarray | None = None) -> Decoded:
        completions = self.decode(split, indices)
        idx = np.arange(len(self.splits[split])) if indices is None else np.asarray(indices)
        examples = [self.splits[split][i] for i in idx]
        rewards = np.array([self.task.reward(c, ex) for c, ex in zip(completions, examples)], dtype=np.float64)
        correct = np.array([self.task.is_correct(c, ex) for c, ex in zip(completions, examples)], dtype=bool)
        answers = [self.task.extract(c) for c in completions]
        return Decoded(Scores(rewards, correct), completions, answers)
