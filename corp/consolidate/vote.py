"""Majority voting over the extracted answers of ranked models (RandOpt's test-time ensemble)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def vote_winners(answers: Sequence[Sequence[str | None]]) -> list[int | None]:
    """Per example, the row (rank) of the member whose answer wins the vote.

    ``answers`` is members x examples, best-ranked member first. Empty or missing answers
    do not vote. The most common answer wins; a tie goes to the answer given by the
    higher-ranked member, and the winner's row is the first member that gave it. None
    where no member gave an answer.
    """
    if not answers:
        return []
    winners: list[int | None] = []
    for column in zip(*answers, strict=True):
        counts: dict[str, int] = {}
        first_row: dict[str, int] = {}
        for row, answer in enumerate(column):
            key = _key(answer)
            if key is None:
                continue
            counts[key] = counts.get(key, 0) + 1
            first_row.setdefault(key, row)
        if not counts:
            winners.append(None)
            continue
        best = max(counts.values())
        winners.append(min(first_row[a] for a, c in counts.items() if c == best))
    return winners


def vote_accuracy(answers: Sequence[Sequence[str | None]], correct: np.ndarray, k: int) -> float:
    """Accuracy of the top-``k`` vote: an example is solved when its winning member solved it.

    Correctness is the task's own judgement of the winner's completion (``correct`` is the
    members x examples matrix), so a vote never needs a second answer checker.
    """
    if not 1 <= k <= len(answers):
        raise ValueError(f"vote over k={k} members, but {len(answers)} were scored")
    winners = vote_winners(answers[:k])
    solved = [w is not None and bool(correct[w, j]) for j, w in enumerate(winners)]
    return float(np.mean(solved)) if solved else 0.0


def _key(answer: str | None) -> str | None:
    if answer is None:
        return None
    answer = answer.strip()
    return answer or None
