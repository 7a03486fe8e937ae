"""An evaluate callback that counts its calls and forwards prefetch hints."""

from __future__ import annotations

import numpy as np

from corp.consolidate.base import Evaluate
from corp.perturb.direction import Direction
from corp.scores import Scores


class CountedEvaluate:
    """An evaluate callback that counts its calls (each call decodes a split once).

    ``prefetch`` passes a hint on to the callback when it takes one (the loop forwards it
    to ``ParameterSpace.prefetch``): the directions about to be evaluated, or (``basis``)
    the principal directions the next local members are built from. Hints change how
    much noise is regenerated, never a score, so a callback without them is fine.
    """

    def __init__(self, evaluate: Evaluate) -> None:
        self.evaluate, self.calls = evaluate, 0
        self._hint = getattr(evaluate, "prefetch", None)

    def __call__(self, direction: Direction, split: str, indices: np.ndarray | None = None) -> Scores:
        self.calls += 1
        return self.evaluate(direction, split, indices)

    def prefetch(self, directions: list[Direction], basis: bool = False) -> None:
        if self._hint is not None:
            self._hint(directions, basis=basis)
