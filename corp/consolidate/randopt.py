"""RandOpt (docs/method.md §1): score a population once, keep the best member.

The committed model is the top-1 member by mean support reward. The top-K members are
also handed back as a test-time ensemble, whose majority vote costs K forward passes
per example; the run reports it for every K in ``vote_ks``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from corp.consolidate.base import (
    ENSEMBLE,
    OPERATORS,
    REFERENCE,
    ConsolidationConfig,
    Ensemble,
    Evaluate,
    Operator,
    Population,
    ReportRow,
    Update,
    isotropic_population,
    rank_members,
)
from corp.consolidate.checks import at_least, fail
from corp.results import Results
from corp.scores import PopulationScores


@dataclass
class RandOptConfig(ConsolidationConfig):
    """``consolidation=randopt``: best-of-N and top-K majority vote."""

    name: str = "randopt"
    # Members scored = population_multiplier x perturbation.population_size, so a sweep can put
    # "RandOpt at 10 N" next to methods at N (consolidation=randopt_10x).
    population_multiplier: int = 1
    vote_ks: list[int] = field(default_factory=lambda: [1, 3, 5])  # ensemble sizes voted on test

    def __post_init__(self) -> None:
        at_least("population_multiplier", self.population_multiplier, 1)
        if not len(self.vote_ks):
            fail("vote_ks", list(self.vote_ks), "must list at least one ensemble size")
        for k in self.vote_ks:
            at_least("vote_ks", k, 1)
        self.vote_ks = sorted({int(k) for k in self.vote_ks})


@OPERATORS.register("randopt")
class RandOptOperator(Operator):
    config_class = RandOptConfig
    display_name = "RandOpt"

    @classmethod
    def report_rows(cls, results: Results, config: dict[str, Any]) -> list[ReportRow]:
        """The top-1 model, and one row per vote size K (K forward passes per test example)."""
        n = results.budget.members_scored
        test = results.splits["test"]
        rows = [ReportRow(f"{cls.display_name} top-1 (N={n})", test.final, sort=(n,), role=REFERENCE)]
        for k, acc in (results.vote.accuracy if results.vote else {}).items():
            label = f"{cls.display_name} vote K={k} (N={n})"
            rows.append(ReportRow(label, acc, passes=int(k), block=1, sort=(n, int(k)), role=ENSEMBLE))
        return rows

    def __init__(
        self, cfg: RandOptConfig, population_size: int, sigmas: list[float], seed: int, antithetic: bool = False
    ) -> None:
        self.cfg = cfg
        self.size = population_size * cfg.population_multiplier
        if max(cfg.vote_ks) > self.size:
            fail("vote_ks", cfg.vote_ks, f"the largest ensemble exceeds the {self.size} members scored")
        self.sigmas, self.seed, self.antithetic = [float(s) for s in sigmas], int(seed), bool(antithetic)
        self.ranking: np.ndarray | None = None
        self.population: Population | None = None

    def propose(self, round_idx: int) -> Population | None:
        if round_idx:
            return None
        pop = isotropic_population(self.seed, round_idx, self.size, self.sigmas, self.antithetic)
        pop.keep = max(self.cfg.vote_ks)  # the top K: the committed member and the vote's ensemble
        return pop

    def update(
        self, round_idx: int, population: Population | None, scores: PopulationScores | None, evaluate: Evaluate
    ) -> Update:
        if population is None or scores is None:
            return Update(None, {}, done=True)
        rewards = scores.selection_rewards
        self.ranking, self.population = rank_members(rewards), population
        top = self.ranking[: max(self.cfg.vote_ks)]
        metrics: dict[str, Any] = {
            "randopt/top1_member": int(top[0]),
            "randopt/top1_support_reward": float(rewards[top[0]]),
            "randopt/top1_support_acc": float(scores.correct[top[0]].mean()),
            "randopt/topk_support_reward_mean": float(rewards[top].mean()),
            "randopt/top1_sigma": float(population.sigmas[top[0]]),
        }
        details = {
            "randopt/top_members": [
                {
                    "rank": r + 1,
                    "member": int(i),
                    "seed": int(population.seeds[i]),
                    "sigma": float(population.sigmas[i]),
                    "support_reward": float(rewards[i]),
                    "support_acc": float(scores.correct[i].mean()),
                }
                for r, i in enumerate(top)
            ]
        }
        return Update(population.members[top[0]], metrics, done=True, details=details)

    def test_ensemble(self) -> Ensemble | None:
        if self.ranking is None or self.population is None:
            return None
        members = [self.population.members[i] for i in self.ranking[: max(self.cfg.vote_ks)]]
        return Ensemble(members, list(self.cfg.vote_ks))

    def state_dict(self) -> dict[str, Any]:
        return {"ranking": None if self.ranking is None else [int(i) for i in self.ranking]}
