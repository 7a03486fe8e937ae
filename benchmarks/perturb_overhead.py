"""Perturb + restore cost against one member's scoring, and peak memory vs population size.

Measured in one run on the embedded model (numbers are ratios of figures taken here):

    python benchmarks/perturb_overhead.py [--members 3] [--populations 8 128] [--noise-cache-mb 0] [--threads N]
        [--dtype auto]

1. For a few members: time of ``space.apply`` + ``space.restore`` vs time of scoring
   that member on the default run's support split (default task and sizes), for each noise
   mode ("independent": one serial stream per tensor; "chunked": blocks drawn by all torch
   threads; "table": windows of one shared noise table, nothing drawn), with the live weights
   in ``--dtype`` and fp32 masters, as a run keeps them; the machine's raw ``torch.randn`` + copy over the same number of weights,
   timed next to each member, is printed as the floor (one serial Gaussian stream per
   weight and one pass to put the centre back). Medians over the members.
2. Peak resident memory of complete ``train.py`` runs (tiny splits, stage 1 only)
   with population 8 and 128: memory must not grow with the population.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corp.config import register_configs, validate  # noqa: E402
from corp.models.loading import load_model  # noqa: E402
from corp.models.precision import resolve_dtype, set_compute_dtype  # noqa: E402
from corp.perturb.direction import Direction  # noqa: E402
from corp.perturb.noise import NOISE_MODES, NoiseSource, noise_table  # noqa: E402
from corp.perturb.space import ParameterSpace  # noqa: E402
from corp.scoring.scorer import Scorer  # noqa: E402
from corp.tasks.base import SPLITS, build_task  # noqa: E402


def default_config():
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose(config_name="config", overrides=["output_dir=/tmp/unused"])
    return validate(cfg)


def perturb_vs_score(members: int, dtype: str) -> None:
    cfg = default_config()
    task = build_task(cfg.task)
    splits = task.splits({s: getattr(cfg.task, f"{s}_size") for s in SPLITS}, cfg.task.data_seed)
    model, tok = load_model(cfg.model, compute=False)
    # One space per noise mode over the same live weights; each restores them before the next.
    spaces = {mode: ParameterSpace(model, NoiseSource(mode)) for mode in NOISE_MODES if mode != "shared"}
    set_compute_dtype(model, resolve_dtype(dtype, "cpu"))
    spaces["chunked"].restore()
    noise_table()  # the whole table drawn before anything is timed (a run draws its blocks once, on first use)
    scorer = Scorer(model, tok, task, splits, cfg.model.chat_template, cfg.model.batch_size)
    scorer.score("support")  # warm-up
    n = spaces["chunked"].dim
    buf, dst = torch.randn(n), torch.empty(n).fill_(0.0)  # touched: no first-use page faults in the floor
    floors, scores = [], []
    applies: dict[str, list[float]] = {mode: [] for mode in spaces}
    restores: dict[str, list[float]] = {mode: [] for mode in spaces}
    for k in range(members):  # everything is re-measured next to each member: load changes by the minute
        t0 = time.perf_counter()
        torch.randn(n, out=buf)
        dst.copy_(buf)
        floors.append(time.perf_counter() - t0)
        for mode, space in spaces.items():
            t1 = time.perf_counter()
            space.apply(Direction.from_seed(1000 + k, cfg.perturbation.sigmas[0]))
            applies[mode].append(time.perf_counter() - t1)
            if mode == cfg.perturbation.noise_mode:  # the member is scored once, under the default mode
                t2 = time.perf_counter()
                scorer.score("support")
                scores.append(time.perf_counter() - t2)
            t3 = time.perf_counter()
            space.restore()
            restores[mode].append(time.perf_counter() - t3)
    score, floor = float(np.median(scores)), float(np.median(floors))
    print(
        f"perturbed weights: {n / 1e6:.1f}M in {len(spaces['chunked'].params)} tensors; support split: "
        f"{len(splits['support'])} examples; {torch.get_num_threads()} threads; live weights {model.dtype}; "
        f"medians of {members} members"
    )
    print(f"scoring per member:           {score:.3f}s")
    print(f"floor (one torch.randn + copy of {n / 1e6:.1f}M floats): {floor:.3f}s = {floor / score:.1%} of scoring")
    for mode in spaces:
        apply, restore = float(np.median(applies[mode])), float(np.median(restores[mode]))
        default = " (the default)" if mode == cfg.perturbation.noise_mode else ""
        print(
            f"noise_mode={mode}{default}: perturb + restore {apply + restore:.3f}s "
            f"(apply {apply:.3f}s, restore {restore:.3f}s) = {(apply + restore) / score:.1%} of scoring, "
            f"{(apply + restore) / floor:.2f}x the floor"
        )


def peak_memory(populations: list[int], noise_cache_mb: float | None) -> None:
    peaks = {}
    for n in populations:
        with tempfile.TemporaryDirectory() as out:
            cmd = [
                sys.executable, str(ROOT / "train.py"), f"perturbation.population_size={n}",
                "task.support_size=4", "task.probe_size=4", "task.test_size=4", "task.max_new_tokens=4",
                "consolidation.stage2_rounds=0", "logger=none", "export_model=false", f"output_dir={out}",
                f"hydra.run.dir={out}",
            ]  # fmt: skip
            if noise_cache_mb is not None:
                cmd.append(f"perturbation.noise_cache_mb={noise_cache_mb}")
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            res = json.loads((Path(out) / "results.json").read_text())
            peaks[n] = res["peak_rss_mb"]
            print(f"population {n:>4}: peak RSS {peaks[n]:.0f} MiB ({time.perf_counter() - t0:.0f}s)")
    lo, hi = min(populations), max(populations)
    print(f"peak memory ratio population {hi} / population {lo}: {peaks[hi] / peaks[lo]:.3f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--populations", type=int, nargs="*", default=[8, 128], help="none: skip part 2")
    ap.add_argument("--noise-cache-mb", type=float, default=None, help="override perturbation.noise_cache_mb")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads for part 1 (default: torch's)")
    ap.add_argument("--dtype", default="auto", help="model.dtype of the scored model (part 1)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.members > 0:
        perturb_vs_score(args.members, args.dtype)
    if args.populations:
        peak_memory(args.populations, args.noise_cache_mb)
