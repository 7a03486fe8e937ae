"""``results.json``: one typed record of a finished run, for ``mode=train`` and ``mode=eval`` alike.

The run builds a ``Results`` and writes it once; the report, the W&B summary and the console
read it back with ``Results.load`` (files written before ``mode`` was recorded are read too).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from corp.consolidate.base import Scores
from corp.tasks.base import SPLITS


@dataclass
class SplitResult:
    """The base and the final (or evaluated) model on one split."""

    base: float  # accuracy
    final: float
    base_reward: float | None  # mean reward
    final_reward: float | None
    n: int  # examples
    vote: dict[str, float] | None = None  # test, with an operator's ensemble: accuracy of the top-k vote per k

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SplitResult:
        """Files from before rewards were recorded hold accuracies only: their rewards read as None."""
        return cls(d["base"], d["final"], d.get("base_reward"), d.get("final_reward"), d.get("n", 0), d.get("vote"))

    @classmethod
    def of(cls, base: Scores, final: Scores) -> SplitResult:
        return cls(base.accuracy, final.accuracy, base.mean_reward, final.mean_reward, len(base.rewards))

    @property
    def gain(self) -> float:
        return self.final - self.base


@dataclass
class Results:
    mode: str  # train | eval
    task: str
    model: str  # model.name_or_path
    dtype: str  # the compute dtype the model was scored in
    splits: dict[str, SplitResult]
    seconds: float
    throughput: dict[str, float] = field(default_factory=dict)  # decoding over the whole run (corp.run)
    method: str | None = None  # train: consolidation.name
    seed: int | None = None  # train: the run seed
    evaluated: str | None = None  # eval: the direction file or model folder scored next to the base
    budget: dict[str, Any] = field(default_factory=dict)  # train: corp.evaluate.Budget and passes per test example
    committed: dict[str, Any] = field(default_factory=dict)  # train: size of the committed direction
    rounds: list[dict[str, Any]] = field(default_factory=list)  # train: each round's scalar metrics
    vote: dict[str, Any] | None = None  # train, with an ensemble: per-k accuracy and members' accuracy
    peak_rss_mb: float | None = None

    @property
    def label(self) -> str:
        """What produced the final model: the method's registry name, or ``eval``."""
        return self.method if self.mode == "train" and self.method else self.mode

    def to_json(self) -> dict[str, Any]:
        """results.json's layout: one top-level entry per split (``results["test"]["final"]``)."""
        head = {"mode": self.mode, "method": self.method, "evaluated": self.evaluated, "task": self.task,
                "model": self.model, "dtype": self.dtype, "seed": self.seed}  # fmt: skip
        out: dict[str, Any] = {k: v for k, v in head.items() if v is not None}
        for split, r in self.splits.items():
            out[split] = {k: v for k, v in asdict(r).items() if v is not None}
        if self.mode == "train":
            out.update({"vote": self.vote, "budget": self.budget, "committed": self.committed, "rounds": self.rounds})
        out.update({"seconds": self.seconds, "throughput": self.throughput, "peak_rss_mb": self.peak_rss_mb})
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Results:
        mode = data.get("mode", "train")  # train runs did not record their mode before
        splits = {s: SplitResult.from_json(data[s]) for s in SPLITS if isinstance(data.get(s), dict)}
        return cls(
            mode=mode, task=data.get("task", "?"), model=data.get("model", "?"), dtype=data.get("dtype", "?"),
            splits=splits, seconds=float(data.get("seconds", 0.0)), throughput=data.get("throughput") or {},
            method=data.get("method"), seed=data.get("seed"), evaluated=data.get("evaluated"),
            budget=data.get("budget") or {}, committed=data.get("committed") or {}, rounds=data.get("rounds") or [],
            vote=data.get("vote"), peak_rss_mb=data.get("peak_rss_mb"),
        )  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> Results:
        """A run folder's (or a file's) results.json."""
        path = Path(path)
        return cls.from_json(json.loads((path / "results.json" if path.is_dir() else path).read_text()))

    def summary(self, out: Path) -> str:
        """What a run prints when it ends."""
        if self.mode == "eval":
            lines = [
                f"evaluated {self.evaluated} on {self.task}",
                f"{'split':<8} {'n':>5} {'base':>8} {'evaluated':>10}",
            ]
            lines += [f"{s:<8} {r.n:>5} {r.base:>8.3f} {r.final:>10.3f}" for s, r in self.splits.items()]
            return "\n".join(["", *lines, f"outputs: {out.resolve()}", ""])
        b = self.budget
        lines = [
            f"CoRP post-training of {self.model} on {self.task} ({self.method}, seed {self.seed})",
            f"{'split':<8} {'n':>5} {'base':>8} {'final':>8} {'delta':>8}",
        ]
        lines += [f"{s:<8} {r.n:>5} {r.base:>8.3f} {r.final:>8.3f} {r.gain:>+8.3f}" for s, r in self.splits.items()]
        lines += [
            f"budget: {b['members_scored']} members scored, {b['example_evals']} example evaluations, "
            f"{b['candidate_evals']} candidate evaluations, {b['noise_draws']:.0f} noise draws, {b['rounds']} rounds",
            f"time: {self.seconds:.0f}s{_decode_part(self.throughput)}",
            f"outputs: {out.resolve()}",
        ]
        return "\n".join(["", *lines, ""])


def _decode_part(t: dict[str, Any]) -> str:
    if not t:  # runs finished before throughput was recorded
        return ""
    return (f" ({t['decode_share']:.0%} decoding: {t['examples_decoded']} examples, "
            f"{t['examples_per_s']:.1f} examples/s, {t['tokens_per_s']:.0f} new tokens/s)")  # fmt: skip
