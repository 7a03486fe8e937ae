"""``rounds.jsonl``: one JSON object per round of the loop, the plots' and W&B's source.

Each line holds the round's scalar metrics (the ones logged), the scored population
(seeds, sigmas, each member's mean reward and accuracy) and the operator's ``details``
(candidate tables, elite weights, spectra). A resumed run replays its rounds from the
first, so the file is rewritten from the start rather than appended to twice.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from corp.consolidate.base import Population
from corp.scores import PopulationScores


def jsonable(value: Any) -> Any:
    """``value`` with numpy types as Python ones and non-finite floats as None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def reward_by_sigma(sigmas: np.ndarray, rewards: np.ndarray) -> list[dict[str, float]]:
    """Members' mean rewards summarised per noise scale, smallest sigma first."""
    rows = []
    for s in sorted(set(np.asarray(sigmas, dtype=np.float64).tolist())):
        r = rewards[sigmas == s]
        rows.append({"sigma": s, "members": len(r), "reward_mean": float(r.mean()), "reward_std": float(r.std()),
                     "reward_min": float(r.min()), "reward_max": float(r.max())})  # fmt: skip
    return rows


@dataclass(frozen=True)
class PopulationEntry:
    """A scored population as a round's line holds it (``"population"``): who was drawn, at which
    scale, how each did. The plots read it back with ``read``."""

    split: str
    size: int
    seeds: list[int]
    sigmas: list[float]
    mean_rewards: list[float]
    accuracy: list[float]
    reward_by_sigma: list[dict[str, float]]

    @classmethod
    def read(cls, data: dict[str, Any]) -> PopulationEntry:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def population_entry(pop: Population, scores: PopulationScores) -> dict[str, Any]:
    """The scored population as plain lists (a ``PopulationEntry``)."""
    entry = PopulationEntry(
        split=pop.split,
        size=len(pop),
        seeds=[int(s) for s in pop.seeds],
        sigmas=[float(s) for s in pop.sigmas],
        mean_rewards=[float(r) for r in scores.mean_rewards],
        accuracy=[float(a) for a in scores.accuracies],  # a raced-out member: over what it was decoded on
        reward_by_sigma=reward_by_sigma(np.asarray(pop.sigmas), scores.mean_rewards),
    )
    return asdict(entry)


class RoundsFile:
    """Appends one line per round to ``path``; ``start`` empties it when the loop (re)starts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")

    def append(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(jsonable(entry), allow_nan=False) + "\n")


def read_rounds(path: Path) -> list[dict[str, Any]]:
    """The rounds in ``path``; a last line torn by a crash is left out, any other bad line raises."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    rounds = []
    for i, line in enumerate(lines):
        try:
            rounds.append(json.loads(line))
        except ValueError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}: line {i + 1} is not JSON") from None
    return rounds
