"""``results.json``: one typed record of a finished run, for ``mode=train`` and ``mode=eval`` alike.

The run builds a ``Results`` and writes it once; the report, the W&B summary and the console
read it back with ``Results.load`` (files written before ``mode`` was recorded are read too).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from corp.scores import Scores
from corp.stats import split_se
from corp.tasks.base import SPLITS


@dataclass
class Budget:
    """What training spent; the unit of every matched-budget comparison. Counted by the evaluator
    (``corp.evaluate``) and nowhere else."""

    members_scored: int = 0  # population members the method consumed (scored here or reused)
    members_reused: int = 0  # ... of which taken from saved scores (population.load)
    example_evals: int = 0  # examples charged to training: members' and charged candidates' examples
    example_evals_reused: int = 0  # ... of which taken from saved scores
    candidate_evals: int = 0  # the operator's evaluate() calls that were charged
    failed_points: int = 0  # members or candidates whose rewards were NaN/inf, scored as failed
    noise_draws: float = 0.0  # whole-model noise vectors generated
    rounds: int = 0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Budget:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass
class Vote:
    """An operator's ensemble voted on test (``Operator.test_ensemble``)."""

    accuracy: dict[str, float]  # k -> accuracy of the top-k majority vote
    member_accuracy: list[float]  # each member alone, best first
    passes: dict[str, int]  # k -> forward passes per test example

    def to_json(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "member_accuracy": self.member_accuracy,
                "forward_passes_per_test_example": self.passes}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Vote:
        return cls(d["accuracy"], d["member_accuracy"], d["forward_passes_per_test_example"])


@dataclass
class Throughput:
    """Decoding over the whole run (base, training, final, votes), summed over the ranks. The rates are
    per second of decoding; ``decode_share`` is the part of the wall time (times the ranks) spent decoding."""

    examples_decoded: int
    tokens_generated: int
    decode_seconds: float
    examples_per_s: float
    tokens_per_s: float
    decode_share: float


@dataclass
class Committed:
    """The size of the committed direction a training run ends with."""

    components: int  # seeds in the direction
    coeff_norm: float


@dataclass
class SplitResult:
    """The base and the final (or evaluated) model on one split."""

    base: float  # accuracy
    final: float
    base_reward: float | None  # mean reward
    final_reward: float | None
    n: int  # examples
    se: dict[str, float] | None = None  # standard errors, corp.stats.split_se (None: files from before them)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SplitResult:
        return cls(d["base"], d["final"], d["base_reward"], d["final_reward"], d["n"], d.get("se"))

    @classmethod
    def of(cls, base: Scores, final: Scores) -> SplitResult:
        return cls(base.accuracy, final.accuracy, base.mean_reward, final.mean_reward, len(base.rewards),
                   se=split_se(base, final))  # fmt: skip

    def with_se(self, key: str) -> str:
        """``key``'s value (base, final or gain) with its SE, as the printed table shows it."""
        value = self.gain if key == "gain" else getattr(self, key)
        sign = "+" if key == "gain" else ""
        return f"{value:{sign}.3f}" + (f"±{self.se[key]:.3f}" if self.se else "")

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
    throughput: Throughput | None = None
    method: str | None = None  # train: consolidation.name
    seed: int | None = None  # train: the run seed
    evaluated: str | None = None  # eval: the direction file or model folder scored next to the base
    budget: Budget | None = None  # train
    committed: Committed | None = None  # train
    rounds: list[dict[str, Any]] = field(default_factory=list)  # train: each round's scalar metrics
    vote: Vote | None = None  # train, with an ensemble
    peak_rss_mb: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)  # corp.provenance: code, packages, data, weights

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
            if split == "test" and self.vote is not None:  # reports read the vote at the test split
                out[split]["vote"] = self.vote.accuracy
        if self.mode == "train":
            out.update({
                "vote": None if self.vote is None else self.vote.to_json(),
                "budget": {**asdict(self.budget), "forward_passes_per_test_example": 1},
                "committed": asdict(self.committed),
                "rounds": self.rounds,
            })  # fmt: skip
        out.update({"seconds": self.seconds, "throughput": asdict(self.throughput) if self.throughput else {},
                    "peak_rss_mb": self.peak_rss_mb, "provenance": self.provenance or None})  # fmt: skip
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Results:
        """Today's layout only; ``python -m corp.migrate`` brings older files to it."""
        splits = {s: SplitResult.from_json(data[s]) for s in SPLITS if s in data}
        throughput, budget, committed = data["throughput"], data.get("budget"), data.get("committed")
        return cls(
            mode=data["mode"], task=data["task"], model=data["model"], dtype=data["dtype"],
            splits=splits, seconds=float(data["seconds"]),
            throughput=Throughput(**throughput) if throughput else None,  # {}: runs from before it was measured
            method=data.get("method"), seed=data.get("seed"), evaluated=data.get("evaluated"),
            budget=Budget.from_json(budget) if budget else None,
            committed=Committed(**committed) if committed else None, rounds=data.get("rounds") or [],
            vote=Vote.from_json(data["vote"]) if data.get("vote") else None, peak_rss_mb=data.get("peak_rss_mb"),
            provenance=data.get("provenance") or {},
        )  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> Results:
        """A run folder's (or a file's) results.json; one in an older layout is refused naming the fix."""
        path = Path(path)
        file = path / "results.json" if path.is_dir() else path
        try:
            return cls.from_json(json.loads(file.read_text()))
        except (KeyError, TypeError) as err:
            raise ValueError(f"{file}: not today's results.json layout ({type(err).__name__}: {err}); "
                             f"python -m corp.migrate <folder> brings it up to date") from None  # fmt: skip

    def summary(self, out: Path) -> str:
        """What a run prints when it ends."""
        if self.mode == "eval":
            lines = [
                f"evaluated {self.evaluated} on {self.task}",
                f"{'split':<8} {'n':>5} {'base ± SE':>12} {'evaluated ± SE':>15}",
            ]
            lines += [f"{s:<8} {r.n:>5} {r.with_se('base'):>12} {r.with_se('final'):>15}"
                      for s, r in self.splits.items()]  # fmt: skip
            return "\n".join(["", *lines, f"outputs: {out.resolve()}", ""])
        b = self.budget or Budget()
        lines = [
            f"CoRP post-training of {self.model} on {self.task} ({self.method}, seed {self.seed})",
            f"{'split':<8} {'n':>5} {'base ± SE':>12} {'final ± SE':>12} {'delta ± paired SE':>18}",
        ]
        lines += [f"{s:<8} {r.n:>5} {r.with_se('base'):>12} {r.with_se('final'):>12} {r.with_se('gain'):>18}"
                  for s, r in self.splits.items()]  # fmt: skip
        lines += [
            f"budget: {b.members_scored} members scored, {b.example_evals} example evaluations, "
            f"{b.candidate_evals} candidate evaluations, {b.noise_draws:.0f} noise draws, {b.rounds} rounds",
            f"time: {self.seconds:.0f}s{_decode_part(self.throughput)}",
            f"outputs: {out.resolve()}",
        ]
        return "\n".join(["", *lines, ""])


def _decode_part(t: Throughput | None) -> str:
    if t is None:  # runs finished before throughput was recorded
        return ""
    return (f" ({t.decode_share:.0%} decoding: {t.examples_decoded} examples, "
            f"{t.examples_per_s:.1f} examples/s, {t.tokens_per_s:.0f} new tokens/s)")  # fmt: skip
