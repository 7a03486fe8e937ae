"""Model soup: the uniform mean of the top-K members' directions, scaled on probe.

The naive averaging docs/method.md §1 warns about: independent perturbations are nearly
orthogonal, so their mean shrinks towards zero (||mean|| ~ sigma / sqrt(K)) and the
useful part may cancel. The step length is chosen on probe exactly like CoRP's stage 1
(``scale_unit=member``: s counts member lengths), so the comparison isolates the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from corp.consolidate.base import (
    OPERATORS,
    ConsolidationConfig,
    Evaluate,
    Operator,
    Population,
    Update,
    isotropic_population,
    rank_members,
)
from corp.consolidate.checks import at_least, choice, fail, positive_list
from corp.perturb.direction import Direction
from corp.scores import PopulationScores


@dataclass
class SoupConfig(ConsolidationConfig):
    """``consolidation=soup``: average the best members, pick the step length on probe."""

    name: str = "soup"
    top_k: int = 4  # members averaged
    scales: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0])  # candidate lengths s
    scale_unit: str = "member"  # "member": s member lengths; "raw": s multiplies the mean itself
    commit: str = "if_no_worse"  # or "always": commit the best candidate whatever its probe accuracy

    def __post_init__(self) -> None:
        at_least("top_k", self.top_k, 1)
        self.scales = positive_list("scales", self.scales)
        choice("scale_unit", self.scale_unit, ("member", "raw"))
        choice("commit", self.commit, ("if_no_worse", "always"))


def soup_direction(members: list[Direction]) -> Direction:
    """The uniform mean of ``members``."""
    return Direction.combine(members, [1.0 / len(members)] * len(members))


@OPERATORS.register("soup")
class SoupOperator(Operator):
    config_class = SoupConfig
    display_name = "Soup"

    def __init__(
        self, cfg: SoupConfig, population_size: int, sigmas: list[float], seed: int, antithetic: bool = False
    ) -> None:
        if cfg.top_k > population_size:
            fail("top_k", cfg.top_k, f"must be <= perturbation.population_size={population_size}")
        self.cfg, self.size = cfg, population_size
        self.sigmas, self.seed, self.antithetic = [float(s) for s in sigmas], int(seed), bool(antithetic)

    def propose(self, round_idx: int) -> Population | None:
        if round_idx:
            return None
        pop = isotropic_population(self.seed, round_idx, self.size, self.sigmas, self.antithetic)
        pop.keep = self.cfg.top_k  # the members averaged
        return pop

    def update(
        self, round_idx: int, population: Population | None, scores: PopulationScores | None, evaluate: Evaluate
    ) -> Update:
        if population is None or scores is None:
            return Update(None, {}, done=True)
        top = rank_members(scores.selection_rewards)[: self.cfg.top_k]
        members = [population.members[i] for i in top]
        mean = soup_direction(members)
        norm = mean.norm()
        if norm == 0.0:
            return Update(None, {"soup/vanished": 1}, done=True)
        unit = float(np.mean([m.norm() for m in members])) / norm if self.cfg.scale_unit == "member" else 1.0
        centre = evaluate(Direction.zero(), "probe")
        candidates = [mean * (s * unit) for s in self.cfg.scales]
        results = [evaluate(c, "probe") for c in candidates]
        # best probe accuracy, then mean reward, then the shorter step (earlier in the grid)
        best = max(range(len(results)), key=lambda i: (results[i].accuracy, results[i].mean_reward, -i))
        commit = self.cfg.commit == "always" or results[best].accuracy >= centre.accuracy
        metrics: dict[str, Any] = {
            "soup/top_k_support_reward_mean": float(scores.mean_rewards[top].mean()),
            "soup/mean_over_member_norm": 1.0 / unit if self.cfg.scale_unit == "member" else norm,
            "soup/best_s": self.cfg.scales[best],
            "soup/probe_acc": results[best].accuracy,
            "soup/centre_probe_acc": centre.accuracy,
            "soup/committed": int(commit),
        }
        for s, res in zip(self.cfg.scales, results, strict=True):
            metrics[f"soup/probe_acc_s{s:g}"] = res.accuracy
        details = {
            "soup/candidate_scores": [
                {"scale": s, "probe_acc": r.accuracy, "probe_reward": r.mean_reward, "best": i == best}
                for i, (s, r) in enumerate(zip(self.cfg.scales, results, strict=True))
            ],
            "soup/top_members": [
                {
                    "rank": r + 1,
                    "member": int(i),
                    "sigma": float(population.sigmas[i]),
                    "support_reward": float(scores.mean_rewards[i]),
                }
                for r, i in enumerate(top)
            ],
        }
        return Update(candidates[best] if commit else None, metrics, done=True, details=details)
