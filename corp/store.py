"""Scores of model points, saved once and reused by any later run.

Scoring is nearly all of a run's cost, and most of it is shared between methods: every
operator's round 0 scores the same isotropic members (``member_seed`` is independent of
the population size, so a population of 10 N starts with the population of N), and every
run of a task scores the same base model on the same splits. Each scored point is saved
as a row of an ``.npz`` file (``populations/`` per round, ``evals/`` per evaluation) and
keyed by

- the *identity* of what was scored: model, dtype, chat template, batch size, the
  perturbation's noise identity (mode, include/exclude), the task settings that decide a
  reward (not the split sizes or the data seed, which only choose examples) and the exact
  examples (prompts and answers) of the split or subset, so a run with a larger probe
  split still reuses every support member scored by a run with a smaller one;
- the *centre* the point was perturbed from (the committed direction, seeds and
  coefficients), and the member's *direction* relative to it.

``population.load=<file or folder>`` indexes every such file below the path; a lookup
hit stands for decoding the same weights on the same prompts, so a run that reuses
scores gives the results of the run that scored them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from corp.perturb.direction import Direction
from corp.scores import PopulationScores, Scores
from corp.tasks.base import EXAMPLE_SELECTION, Example

log = logging.getLogger(__name__)


def direction_key(direction: Direction) -> str:
    """The store's key of a direction. Coefficients are rounded to 12 significant digits: arithmetic
    that changed only in its summation order (last-bit differences) still finds the saved point, and
    no difference that small moves an fp32 weight."""
    data = direction.to_json()
    data["coeffs"] = [float(f"{c:.12g}") for c in data["coeffs"]]
    return json.dumps(data, separators=(",", ":"))


def store_context(config: dict[str, Any], dtype: str, batch_size: int) -> dict[str, Any]:
    """What, besides the examples, decides a model point's scores, from a run's plain config (as
    ``config.json`` holds it), the dtype it decodes in and its scorer's batch size."""
    p = config["perturbation"]
    return {
        "model": {
            "name_or_path": config["model"]["name_or_path"],
            "dtype": dtype,
            "chat_template": config["model"]["chat_template"],
        },
        "batch_size": batch_size,  # left padding can flip rare greedy ties
        "noise": {"mode": p["noise_mode"], "include": list(p["include"]), "exclude": list(p["exclude"])},
        "task": {k: v for k, v in config["task"].items() if k not in EXAMPLE_SELECTION},
        "version": 2,
    }


def _digest(data: Any) -> str:
    return hashlib.blake2b(json.dumps(data, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def split_identity(context: dict[str, Any], examples: list[Example], indices: Sequence[int] | None = None) -> str:
    """The identity of scores on ``examples`` (or the subset ``indices``) under ``context``."""
    chosen = examples if indices is None else [examples[i] for i in indices]
    return _digest([_digest(context), [[ex.prompt, ex.answer] for ex in chosen]])


class ScoreStore:
    """An index of scored points: (identity, centre, direction) -> ``Scores``. A row may be partial
    (a member raced out, corp/racing.py): NaN rewards where an example was not decoded."""

    def __init__(self, context: dict[str, Any], splits: dict[str, list[Example]]) -> None:
        self.context = context
        self.splits = splits
        self._rows: dict[tuple[str, str, str], Scores] = {}
        self._identities: dict[tuple[str, tuple | None], str] = {}
        self.files_loaded = 0

    def __len__(self) -> int:
        return len(self._rows)

    def identity(self, split: str, indices: Sequence[int] | np.ndarray | None = None) -> str:
        """Digest of the run context and the exact examples of ``split`` (or its subset)."""
        key = (split, None if indices is None else tuple(int(i) for i in indices))
        if key not in self._identities:
            self._identities[key] = split_identity(self.context, self.splits[split], key[1])
        return self._identities[key]

    def get(self, identity: str, centre: Direction, direction: Direction) -> Scores | None:
        return self._rows.get((identity, direction_key(centre), direction_key(direction)))

    def put(self, identity: str, centre: Direction, direction: Direction, scored: Scores) -> None:
        self._rows[(identity, direction_key(centre), direction_key(direction))] = scored

    def load(self, path: str | Path, source: str = "loaded", exclude: str | Path | None = None) -> int:
        """Index every saved file at or below ``path`` except those under ``exclude``; returns the
        number of rows added. A row already indexed keeps its first source.

        ``source="resumed"`` marks this run's own earlier scores: replaying them is not reuse
        of another run's budget."""
        path = Path(path)
        files = [path] if path.is_file() else sorted(f for f in path.rglob("*.npz") if not f.name.endswith(".tmp.npz"))
        if exclude is not None:
            skip = Path(exclude).resolve()
            files = [f for f in files if not f.resolve().is_relative_to(skip)]
        before = len(self._rows)
        for file in files:
            try:
                self._load_file(file, source)
            except (OSError, ValueError, KeyError) as err:  # a torn or foreign file costs a rescore, not the run
                log.warning("population.load: skipping %s (%s)", file, err)
        log.info("population.load: %d scored points from %d files under %s", len(self._rows) - before, len(files), path)
        return len(self._rows) - before

    def _load_file(self, file: Path, source: str) -> None:
        with np.load(file, allow_pickle=False) as data:
            if "identity" not in data.files:
                raise KeyError("not a corp score file (no identity)")
            identity = str(data["identity"])
            centre = direction_key(Direction.from_json(json.loads(str(data["centre"]))))
            members = [Direction.from_json(m) for m in json.loads(str(data["members"]))]
            scores = PopulationScores.from_npz(data)
        if len(members) != len(scores):
            raise ValueError("row counts disagree")
        for i, member in enumerate(members):
            if scores.mask[i].any():  # a raced-out member's partial row: NaN where not decoded
                self._rows.setdefault((identity, centre, direction_key(member)), scores.row(i, source))
        self.files_loaded += 1


def save_scored(
    path: Path,
    identity: str,
    centre: Direction,
    members: Sequence[Direction],
    scores: PopulationScores,
    split: str,
    indices: np.ndarray | None = None,
    seeds: np.ndarray | None = None,
    sigmas: np.ndarray | None = None,
) -> None:
    """Write scored members of one centre atomically (kilobytes: seeds, coefficients, scores)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(
        tmp,
        identity=np.array(identity),
        centre=np.array(json.dumps(centre.to_json())),
        split=np.array(split),
        indices=np.asarray(indices if indices is not None else [], dtype=np.int64),
        members=np.array(json.dumps([m.to_json() for m in members])),
        seeds=np.asarray(seeds if seeds is not None else [], dtype=np.int64),
        sigmas=np.asarray(sigmas if sigmas is not None else [], dtype=np.float64),
        **scores.to_npz(),
    )
    os.replace(tmp, path)
