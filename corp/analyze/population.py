"""Saved populations (``populations/round_XXX.npz``, written by ``corp.store.save_scored``) as analysis input."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from corp.perturb.direction import Direction

_REQUIRED = ("members", "rewards", "centre", "split")
_ROUND = re.compile(r"round_(\d+)\.npz$")


class PopulationError(ValueError):
    """The input is not a readable saved population (the message says why and what is expected)."""


@dataclass(frozen=True)
class SavedPopulation:
    """Scored members of one round read back from disk: seed-space directions and their per-example
    rewards. Not ``corp.consolidate.base.Population``, the members an operator asks to have scored."""

    path: Path
    round: int | None
    split: str
    members: list[Direction]  # relative to the round's centre
    rewards: np.ndarray  # members x examples; NaN where a raced-out member was not decoded (corp/racing.py)

    @property
    def mean_rewards(self) -> np.ndarray:
        return self.rewards.mean(axis=1)

    def complete(self) -> SavedPopulation:
        """The members decoded on every example (a race leaves the others partial)."""
        keep = np.flatnonzero(~np.isnan(self.rewards).any(axis=1))
        return replace(self, members=[self.members[i] for i in keep], rewards=self.rewards[keep])


def load_population(path: Path) -> SavedPopulation:
    """Read one ``.npz`` score file; raises ``PopulationError`` naming what is missing or inconsistent."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _REQUIRED if k not in data.files]
            if missing:
                raise PopulationError(
                    f"{path}: not a corp population file (missing keys: {', '.join(missing)}; "
                    "expected populations/round_XXX.npz of a run folder)"
                )
            members = [Direction.from_json(m) for m in json.loads(str(data["members"]))]
            rewards = np.asarray(data["rewards"], dtype=np.float64)
            split = str(data["split"])
    except (OSError, ValueError, KeyError) as err:
        if isinstance(err, PopulationError):
            raise
        raise PopulationError(f"{path}: cannot read as a corp population file ({err})") from err
    if rewards.ndim != 2 or len(members) != rewards.shape[0]:
        raise PopulationError(f"{path}: {len(members)} members but a rewards array of shape {rewards.shape}")
    if not len(members) or not rewards.shape[1]:
        raise PopulationError(f"{path}: an empty population ({rewards.shape[0]} members x {rewards.shape[1]} examples)")
    match = _ROUND.search(path.name)
    return SavedPopulation(path, int(match.group(1)) if match else None, split, members, rewards)


def _score_archive(folder: Path) -> Path | None:
    """The ``scores.tar.xz`` of the committed sweep ``folder`` belongs to (the folder or one above it)."""
    for parent in [folder.resolve(), *folder.resolve().parents][:4]:
        if (parent / "scores.tar.xz").is_file():
            return parent / "scores.tar.xz"
    return None


def population_files(path: Path, round_: int | None = None) -> list[Path]:
    """The population files of ``path``: the file itself, or a run folder's ``populations/round_XXX.npz``.

    Partial (``.partial.npz``, still being scored) and temporary files are skipped."""
    if not path.exists():
        raise PopulationError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix != ".npz":
            raise PopulationError(f"{path}: expected a .npz population file or a run folder")
        return [path]
    folder = path / "populations" if (path / "populations").is_dir() else path
    files = sorted(f for f in folder.glob("round_*.npz") if _ROUND.search(f.name))
    if not files:
        archive = _score_archive(folder)
        if archive is not None:  # a committed sweep keeps its scores packed (benchmarks/score_archive.py)
            raise PopulationError(f"{path}: no populations/round_XXX.npz here; its sweep's scores are packed in "
                                  f"{archive}: run `python benchmarks/score_archive.py unpack` first")  # fmt: skip
        raise PopulationError(
            f"{path}: no populations/round_XXX.npz here (pass a run folder, its populations/ folder or a .npz file)"
        )
    if round_ is None:
        return files
    chosen = [f for f in files if int(_ROUND.search(f.name).group(1)) == round_]
    if not chosen:
        rounds = ", ".join(str(int(_ROUND.search(f.name).group(1))) for f in files)
        raise PopulationError(f"--round {round_}: no such round under {folder} (rounds: {rounds})")
    return chosen
