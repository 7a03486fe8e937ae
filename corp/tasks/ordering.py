"""Sentence ordering, the paper's ROCStories "creative writing" task: restore a shuffled five-sentence story.

Records hold a story as ``sentence1`` .. ``sentenceN`` columns (the ROCStories CSV layout), a
``sentences`` list, or one ``text`` string split at sentence ends (stories that do not split into
``task.num_sentences`` sentences are skipped). Each story is shuffled (never left in order) with a
generator seeded by the story, so its prompt is the same in every run.

Prompt: the numbered shuffled sentences and a request for the numbers in story order. Extraction:
the numbers 1..N in the completion in order of appearance, repeats dropped. Reward (docs/method.md
§5): 0.6 x position accuracy + 0.4 x adjacent-pair accuracy; solved means the exact order.
Vote key: the extracted order, e.g. "3 1 5 2 4".
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from corp.tasks.base import TASKS, Example
from corp.tasks.dataset import DataConfig, DatasetTask, column

POSITION_WEIGHT, PAIR_WEIGHT = 0.6, 0.4
PROMPT = (
    "Put these sentences in the order that makes a coherent story.\n\n{sentences}\n\n"
    "Answer with the sentence numbers in story order, separated by spaces, and nothing else."
)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"']?\s+(?=[\"']?[A-Z])")


@dataclass
class OrderingConfig(DataConfig):
    """``task.*`` options of sentence ordering."""

    name: str = "rocstories"
    dataset: str | None = "qikp/rocstories-merged"  # storyid, storytitle, text
    train_split: str = "spring2016"
    test_split: str | None = "winter2017"
    num_sentences: int = 5  # stories with another number of sentences are skipped

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.num_sentences, int) or not 2 <= self.num_sentences <= 9:
            raise ValueError(f"task.num_sentences={self.num_sentences!r}: must be an integer in 2..9")


def story_sentences(row: dict[str, Any], n: int) -> list[str] | None:
    """The story's sentences from whichever layout the record has (None: not exactly ``n``)."""
    if f"sentence{n}" in row:
        sentences = [str(row[f"sentence{i}"]) for i in range(1, n + 1)]
    elif "sentences" in row:
        sentences = [str(s) for s in row["sentences"]]
    else:
        sentences = _SENTENCE_END.split(str(column(row, "text")).strip())
    sentences = [s.strip() for s in sentences if s and s.strip()]
    return sentences if len(sentences) == n else None


def parse_order(completion: str, n: int) -> list[int] | None:
    """Sentence numbers 1..n in order of appearance, repeats dropped; None when fewer than two."""
    order: list[int] = []
    for token in re.findall(r"\d+", completion):
        k = int(token)
        if 1 <= k <= n and k not in order:
            order.append(k)
            if len(order) == n:
                break
    return order if len(order) >= 2 else None


def order_reward(predicted: list[int], truth: list[int]) -> float:
    """0.6 x share of positions right + 0.4 x share of the true adjacent pairs kept adjacent, in order."""
    n = len(truth)
    positions = sum(p == t for p, t in zip(predicted, truth)) / n
    kept = set(zip(predicted, predicted[1:]))
    pairs = sum(pair in kept for pair in zip(truth, truth[1:])) / (n - 1)
    return POSITION_WEIGHT * positions + PAIR_WEIGHT * pairs


@TASKS.register("rocstories")
class OrderingTask(DatasetTask):
    """Shuffled stories; reward for positions and adjacent pairs put back in order."""

    config_class = OrderingConfig
    max_new_tokens = 64  # as published; the answer itself is about ten tokens

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.n = int(cfg.num_sentences)

    def to_example(self, row: dict[str, Any]) -> Example | None:
        sentences = story_sentences(row, self.n)
        if sentences is None:
            return None
        rng = random.Random(" ".join(sentences))  # str seeds hash with SHA-512: stable across runs
        shown = list(range(self.n))
        while shown == sorted(shown):
            rng.shuffle(shown)
        listing = "\n".join(f"[{i + 1}] {sentences[j]}" for i, j in enumerate(shown))
        truth = [shown.index(k) + 1 for k in range(self.n)]  # shown number of each story position
        return Example(prompt=PROMPT.format(sentences=listing), answer=" ".join(map(str, truth)),
                       meta={"order": truth})  # fmt: skip

    def extract(self, completion: str) -> str | None:
        order = parse_order(completion, self.n)
        return None if order is None else " ".join(map(str, order))

    def reward(self, completion: str, example: Example) -> float:
        order = parse_order(completion, self.n)
        return 0.0 if order is None else order_reward(order, example.meta["order"])

    def is_correct(self, completion: str, example: Example) -> bool:
        return parse_order(completion, self.n) == example.meta["order"]
