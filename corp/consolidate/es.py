"""Evolution strategies (docs/method.md §1): a z-scored reward-weighted step per round.

theta <- theta + alpha * (1/N) * sum_i z_i eps_i, with eps_i the unit Gaussian noise of
member i (scored at theta + sigma eps_i) and z the population z-score of the mean rewards.
The step lives in seed space and is committed through ``ParameterSpace.commit``, which
rebuilds the centre from the base in fp32, so many small steps accumulate without bf16
rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from corp.consolidate.base import (
    OPERATORS,
    ConsolidationConfig,
    Evaluate,
    Operator,
    Population,
    ReportRow,
    Update,
    isotropic_population,
)
from corp.consolidate.checks import at_least, positive
from corp.consolidate.stage1 import zscore
from corp.perturb.direction import Direction
from corp.results import Results
from corp.scores import PopulationScores


@dataclass
class ESConfig(ConsolidationConfig):
    """``consolidation=es``; the published recipe is ``consolidation=es_paper``."""

    name: str = "es"
    rounds: int = 6  # generations
    population_size: int | None = None  # N per round; null: perturbation.population_size
    sigma: float = 2e-3  # member noise scale
    lr: float = 2e-3  # alpha

    def __post_init__(self) -> None:
        at_least("rounds", self.rounds, 1)
        if self.population_size is not None:
            at_least("population_size", self.population_size, 2)
        self.sigma = positive("sigma", self.sigma)
        self.lr = positive("lr", self.lr)


def es_step(population: Population, mean_rewards: np.ndarray, lr: float) -> Direction | None:
    """alpha/N * sum z_i s_i eps(seed_i), s_i the sign of member i (+-sigma * eps(seed_i)); None when the
    rewards do not differ (no signal). A mirrored pair shares its seed, so its two terms add up to
    alpha/N * (z_+ - z_-) eps(seed)."""
    z = zscore(mean_rewards)
    if not np.any(z):
        return None
    signs = np.array([np.sign(m.coeffs[0]) for m in population.members])
    return Direction(np.asarray(population.seeds, dtype=np.int64), lr / len(z) * z * signs).pruned()


@OPERATORS.register("es")
class ESOperator(Operator):
    config_class = ESConfig
    display_name = "ES"

    @classmethod
    def from_config(cls, cfg: Any) -> ESOperator:
        """ES draws its members at its own ``consolidation.sigma``, not ``perturbation.sigmas``."""
        p = cfg.perturbation
        return cls(cfg.consolidation, p.population_size, cfg.seed, p.antithetic)

    @classmethod
    def report_rows(cls, results: Results, config: dict[str, Any]) -> list[ReportRow]:
        """One row, labelled with the members per round and the rounds."""
        es = config["consolidation"]
        n = es["population_size"] or config["perturbation"]["population_size"]
        label = f"{cls.display_name} (N={n} x {es['rounds']} rounds)"
        return [ReportRow(label, results.splits["test"].final)]

    def __init__(self, cfg: ESConfig, population_size: int, seed: int, antithetic: bool = False) -> None:
        self.cfg, self.seed, self.antithetic = cfg, int(seed), bool(antithetic)
        self.size = cfg.population_size or population_size

    def propose(self, round_idx: int) -> Population | None:
        if round_idx >= self.cfg.rounds:
            return None
        return isotropic_population(self.seed, round_idx, self.size, [self.cfg.sigma], self.antithetic)

    def update(
        self, round_idx: int, population: Population | None, scores: PopulationScores | None, evaluate: Evaluate
    ) -> Update:
        done = round_idx + 1 >= self.cfg.rounds
        if population is None or scores is None:
            return Update(None, {}, done=True)
        rewards = scores.mean_rewards
        step = es_step(population, rewards, self.cfg.lr)
        metrics: dict[str, Any] = {
            "es/reward_mean": float(rewards.mean()),
            "es/reward_std": float(rewards.std()),
            "es/step_norm": 0.0 if step is None else step.norm(),
            "es/flat_rewards": int(step is None),
        }
        return Update(step, metrics, done=done)
