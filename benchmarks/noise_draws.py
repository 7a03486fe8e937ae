"""Noise draws of a whole CoRP run against the published recipe's count for the same run.

    python benchmarks/noise_draws.py [--rows 7 15 32] [--population 500] [--seed 0]

Runs CoRP with ``conf/consolidation/corp_paper.yaml`` and the published population
(``conf/perturbation/paper.yaml``: N = 500, sigma in {5e-4, 1e-3, 2e-3}; 500 support and
100 probe examples) against a fake evaluator with a planted optimum, so no language model
is needed. Every member and candidate is still applied to a real ``ParameterSpace`` (on a
tiny model), and draws are read from the project's own counter (``space.noise.draws``,
whole-model noise vectors), commits included.

The recipe's count for the same run (same populations, same elites, same principal
directions) is what the published code regenerates: every member once; in stage 1, every
elite seed for each (q, beta); in stage 2, for every local member its fresh seed plus every
elite seed the principal directions are built from (the seeds of the weighted cloud they
were fitted on). It leaves out the recipe's stage-2 merges, gates, line searches and
commits, so the printed ratio is an upper bound.

``--rows`` are dense-row budgets to compare (rows = perturbation.noise_cache_mb / (4 bytes x
perturbed weights): 7 rows is the 4 GiB default on the embedded 135M model, 15 is 8 GiB).
Each is run with the operator's prefetch hints reaching the space (what the loop does once
its evaluate callback forwards ``prefetch``) and without them, next to no dense rows at all.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import corp.consolidate.corp as corp_module  # noqa: E402
from corp.consolidate.base import member_seed  # noqa: E402
from corp.consolidate.corp import CorpConfig, CorpOperator  # noqa: E402
from corp.consolidate.stage1 import elite_indices  # noqa: E402
from corp.consolidate.stage2 import LocalPopulation  # noqa: E402
from corp.perturb.direction import Direction, seed_basis  # noqa: E402
from corp.perturb.noise import NoiseSource  # noqa: E402
from corp.perturb.space import ParameterSpace  # noqa: E402
from corp.scores import PopulationScores, Scores  # noqa: E402

SUPPORT, PROBE = 500, 100
THRESHOLD_MAX, WINDOW = 4.0, 3.0  # example j is solved for lo_j < p < lo_j + WINDOW, lo_j ~ U(-0.3, THRESHOLD_MAX)


class Planted:
    """Example j is solved when t . (centre + d) / sigma > lo_j: t is a hidden unit direction over
    the round-0 seeds, and the thresholds lie beyond what one stage-1 step reaches, so the
    stage-2 rounds have something to find."""

    def __init__(self, run_seed: int, population: int, sigma: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        t = Direction(
            np.array([member_seed(run_seed, 0, i) for i in range(population)]), rng.standard_normal(population)
        )
        self.target, self.sigma = t * (1.0 / t.norm()), sigma
        self.lo = {
            "support": rng.uniform(-0.3, THRESHOLD_MAX, SUPPORT),
            "probe": rng.uniform(-0.3, THRESHOLD_MAX, PROBE),
        }
        self.centre = Direction.zero()

    def __call__(self, direction: Direction, split: str, indices: np.ndarray | None = None) -> Scores:
        p = self.target.dot(self.centre + direction) / self.sigma
        lo = self.lo[split] if indices is None else self.lo[split][indices]
        correct = (lo < p) & (p < lo + WINDOW)
        return Scores(correct.astype(np.float64), correct)


class Evaluate:
    """The loop's evaluate callback: applies the direction to the live model, then scores it."""

    def __init__(self, space: ParameterSpace, fake: Planted, hints: bool) -> None:
        self.space, self.fake = space, fake
        if hints:
            self.prefetch = space.prefetch

    def __call__(self, direction: Direction, split: str, indices: np.ndarray | None = None) -> Scores:
        with self.space.perturbed(direction):
            return self.fake(direction, split, indices)


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
    )  # fmt: skip
    return LlamaForCausalLM(cfg)


class CloudSeeds:
    """Records how many seeds the cloud behind the current principal directions spans.

    The published code builds each principal direction from the noise of every member of
    the cloud it was fitted on, so that is what it regenerates per local member.
    """

    def __init__(self) -> None:
        self.seeds = 0
        self._fit = corp_module.fit_cloud

    def __call__(self, directions, weights, rank):
        self.seeds = len(seed_basis(list(directions)))
        return self._fit(directions, weights, rank)


def run(rows: int | None, hints: bool, population: int, seed: int) -> dict:
    """One CoRP run; ``rows=None`` disables dense rows."""
    raw = OmegaConf.load(ROOT / "conf" / "consolidation" / "corp_paper.yaml")
    raw.pop("defaults")
    cfg: CorpConfig = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(CorpConfig), raw))
    sigmas = list(OmegaConf.load(ROOT / "conf" / "perturbation" / "paper.yaml").sigmas)
    model = tiny_model()
    dim = sum(p.numel() for p in model.parameters())
    budget = 0.0 if rows is None else (rows + 0.5) * 4 * dim / 2**20
    space = ParameterSpace(model, NoiseSource(), dense_cache=rows is not None, noise_cache_mb=budget)
    fake = Planted(seed, population, float(np.mean(sigmas)), seed)
    evaluate = Evaluate(space, fake, hints)
    op = CorpOperator(cfg, population, sigmas, seed, SUPPORT)
    cloud = CloudSeeds()
    corp_module.fit_cloud = cloud  # the operator looks it up in its module at call time
    recipe = {"population": 0.0, "stage1": 0.0, "stage2": 0.0}
    ours = {"members": 0.0, "operator": 0.0, "commits": 0.0}
    accepted = 0
    for round_idx in range(100):
        pop = op.propose(round_idx)
        if pop is None:
            break
        rows_scores = []
        before = space.noise.draws
        for member in pop.members:
            with space.perturbed(member):
                rows_scores.append(fake(member, pop.split, pop.indices))
        scores = PopulationScores.stack(rows_scores)
        ours["members"] += space.noise.draws - before
        if isinstance(pop, LocalPopulation):  # stage 2: fresh seed + every seed of the cloud, per member
            recipe["stage2"] += len(pop) * (1 + cloud.seeds)
        else:  # stage 0 + 1: each member once, then every elite seed for each (q, beta)
            recipe["population"] += len(pop)
            rewards = scores.mean_rewards
            recipe["stage1"] += sum(len(elite_indices(rewards, q)) * len(cfg.betas) for q in cfg.quantiles)
        before = space.noise.draws
        upd = op.update(round_idx, pop, scores, evaluate)
        ours["operator"] += space.noise.draws - before
        if upd.step is not None and len(upd.step):
            before = space.noise.draws
            space.commit(upd.step)
            ours["commits"] += space.noise.draws - before
            fake.centre = fake.centre + upd.step
            accepted += round_idx > 0
        if upd.done:
            break
    corp_module.fit_cloud = cloud._fit
    total = sum(recipe.values())
    return {
        "draws": space.noise.draws,
        "ours": ours,
        "recipe": total,
        "parts": recipe,
        "rounds": round_idx + 1,
        "accepted": accepted,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[7, 15, 32])
    ap.add_argument("--population", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"corp_paper grid, population {args.population}, {SUPPORT} support / {PROBE} probe examples")
    setups = [(None, False)] + [(r, h) for r in args.rows for h in (False, True)]
    for rows, hints in setups:
        res = run(rows, hints, args.population, args.seed)
        parts = ", ".join(f"{k} {v:.0f}" for k, v in res["parts"].items())
        mine = ", ".join(f"{k} {v:.0f}" for k, v in res["ours"].items())
        label = "no dense rows" if rows is None else f"{rows:>2} dense rows, {'with' if hints else 'without'} hints"
        print(
            f"{label:<31} draws {res['draws']:6.0f} ({mine})\n{'':<31} recipe {res['recipe']:5.0f} ({parts})"
            f"   ratio {res['draws'] / res['recipe']:.3f}"
        )
    print(f"[each run: {res['rounds']} rounds, {res['accepted']} stage-2 round(s) accepted]")
