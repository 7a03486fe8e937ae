"""Each reward function's mean, for the loggers: per scored point (``rewards/<name>/mean``) and per
round over the round's members (``population/rewards/<name>/mean``). Only tasks with named reward
components (a custom task's ``task.reward_fn`` list, ``Task.reward_parts``) have any."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from corp.observe.callbacks import PointScored


def point_values(rec: PointScored) -> dict[str, float]:
    return {f"rewards/{name}/mean": value for name, value in rec.parts.items()}


class RoundParts:
    """The members' reward components seen in the current round."""

    def __init__(self) -> None:
        self._values: dict[str, list[float]] = defaultdict(list)

    def add(self, rec: PointScored) -> None:
        if rec.kind == "member" and not rec.failed:
            for name, value in rec.parts.items():
                self._values[name].append(value)

    def pop(self) -> dict[str, float]:
        """The round's means, and a fresh start for the next round."""
        out = {f"population/rewards/{name}/mean": float(np.mean(v)) for name, v in self._values.items()}
        self._values.clear()
        return out
