"""Measured 1-, 2- and 4-rank CPU runs against the cost model of docs/scaling.md.

    python benchmarks/rank_scaling.py                          # 1, 2, 4 ranks (an idle machine: ~5 min)
    python benchmarks/rank_scaling.py --ranks 1 2 --slow-rank 1 --slowdown 4   # a straggler

A small real CoRP run of the embedded model (SmolLM2-135M) on arithmetic: N = 12 members on
16 support examples, 8 probe and 8 test examples, a 1 x 1 x 2 stage-1 grid, one stage-2
round of 8 local members, one torch thread per rank, no logger, no dense noise rows (about
2.5 GB per rank, so 4 ranks fit in memory next to other work). Each rank count runs
``train.py`` once (``trainer.devices=R trainer.strategy=ddp``: Lightning starts the ranks);
the runs' own ``results.json`` and ``rounds.jsonl`` give the times.

The model (docs/scaling.md, sections 2 and 6) is calibrated on the 1-rank run alone: per round,
the seconds per decoded example, the share of the round that is member decoding and
perturbation (dealt over the ranks) and the rest (candidates, on rank 0). For R ranks on C
cores a member share is ceil(M / R) members, each max(1, R / C) times slower when ranks
outnumber cores; startup adds the other ranks' interpreter start and imports, which run
max(1, (R - 1) / C) times that of one rank. It prints predicted against measured seconds
per round and for the whole run.

``--slow-rank K --slowdown F`` makes rank K F times slower from outside (SIGSTOP for
(F - 1) / F of every 100 ms, SIGCONT for the rest; no code in corp knows) and prints the
round times against static shares (today: the round waits for the slow rank's share) and
against an ideal dynamic share (every rank drains one queue at its own speed).

Timings from a loaded machine say nothing: run it alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIG = ["task=arithmetic", "task.support_size=16", "task.probe_size=8", "task.test_size=8",
          "perturbation.population_size=12", "consolidation.quantiles=[0.5]", "consolidation.betas=[5.0]",
          "consolidation.scales=[1.0,4.0]", "consolidation.stage2_rounds=1", "consolidation.local_members=8",
          "logger=none", "export_model=false", "trainer.num_threads=1", "perturbation.noise_cache_mb=0"]  # fmt: skip


@dataclass
class Round:
    seconds: float
    members: int  # decoded in this round (dealt over the ranks)
    examples: int  # per member
    candidates: int  # evaluate() calls (rank 0)
    decode_s: float  # summed over the ranks
    decoded: int  # examples decoded, summed over the ranks


@dataclass
class Measured:
    ranks: int
    wall: float  # the process, start to exit
    seconds: float  # results.json: run() start to end
    rounds: list[Round]


def run(ranks: int, out: Path, slow: tuple[int, float] | None) -> Measured:
    cmd = [sys.executable, str(ROOT / "train.py"), *CONFIG, f"hydra.run.dir={out}", f"trainer.devices={ranks}",
           f"trainer.strategy={'ddp' if ranks > 1 else 'auto'}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    throttle = threading.Thread(target=slow_down, args=(proc, *slow), daemon=True) if slow else None
    if throttle:
        throttle.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"{ranks} ranks failed:\n{err[-3000:]}")
    res = json.loads((out / "results.json").read_text())
    rounds = []
    for line in (out / "rounds.jsonl").read_text().splitlines():
        entry = json.loads(line)
        m, pop = entry["metrics"], entry["population"]
        rounds.append(Round(m["round/seconds"], len(pop["seeds"]), examples_per_member(out, entry["round"]),
                            candidates_of(m), m["throughput/decode_seconds"], m["throughput/examples"]))  # fmt: skip
    return Measured(ranks, wall, res["seconds"], rounds)


def examples_per_member(out: Path, round_idx: int) -> int:
    import numpy as np

    with np.load(out / "populations" / f"round_{round_idx:03d}.npz") as f:
        return int(f["rewards"].shape[1])


def candidates_of(metrics: dict) -> int:
    return int(sum(v for k, v in metrics.items() if k.endswith("/evaluate_calls")))


def rank_pid(parent: int, rank: int) -> int | None:
    """Local rank ``rank`` among the processes Lightning started under ``parent``."""
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except FileNotFoundError:
        return None
    for pid in children:
        try:
            if f"LOCAL_RANK={rank}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                return int(pid)
        except FileNotFoundError:
            continue
    return None


def slow_down(proc: subprocess.Popen, rank: int, factor: float, period: float = 0.1) -> None:
    """Run ``rank`` 1 / ``factor`` of the time: SIGSTOP / SIGCONT from outside, until it ends."""
    pid = None
    while pid is None and proc.poll() is None:
        pid = proc.pid if rank == 0 else rank_pid(proc.pid, rank)
        time.sleep(0.01)
    if pid is None:  # the run ended first
        return
    on = period / factor
    try:
        while proc.poll() is None:
            os.kill(pid, signal.SIGCONT)
            time.sleep(on)
            os.kill(pid, signal.SIGSTOP)
            time.sleep(period - on)
    except ProcessLookupError:
        return
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def predict_round(base: Round, ranks: int, cores: int, slow: tuple[int, float] | None = None) -> float:
    """A round on ``ranks`` ranks from its 1-rank measurement (see the module docstring)."""
    per_example = base.decode_s / base.decoded
    points = base.members + base.candidates
    other = base.seconds - base.decode_s  # perturb, restore, operator, saving
    member_one = base.examples * per_example + other / points  # one member, decode + its share of the rest
    serial = base.seconds - base.members * member_one
    contention = max(1.0, ranks / cores)
    shares = [len(range(r, base.members, ranks)) for r in range(ranks)]  # round-robin
    speed = [slow[1] if slow and r == slow[0] else 1.0 for r in range(ranks)]
    return max(s * f for s, f in zip(shares, speed)) * member_one * contention + serial


def predict_dynamic(base: Round, ranks: int, slow: tuple[int, float]) -> float:
    """The same round if the ranks drained one queue of members, each at its own speed."""
    per_example = base.decode_s / base.decoded
    member_one = base.examples * per_example + (base.seconds - base.decode_s) / (base.members + base.candidates)
    serial = base.seconds - base.members * member_one
    rate = sum(1.0 / (slow[1] if r == slow[0] else 1.0) for r in range(ranks))
    return math.ceil(base.members / rate) * member_one + serial


def predict_wall(base: Measured, ranks: int, cores: int) -> float:
    startup = base.wall - base.seconds  # interpreter start and imports, before run() starts its clock
    extra = startup * max(1.0, (ranks - 1) / cores) if ranks > 1 else 0.0  # the other ranks start after rank 0
    rounds = sum(predict_round(r, ranks, cores) - r.seconds for r in base.rounds)
    return base.wall + extra + rounds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--slow-rank", type=int, default=None)
    ap.add_argument("--slowdown", type=float, default=4.0)
    args = ap.parse_args()
    if args.ranks[0] != 1:
        sys.exit("--ranks must start with 1: the model is calibrated on the 1-rank run")
    slow = (args.slow_rank, args.slowdown) if args.slow_rank is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for r in args.ranks:
            runs.append(run(r, Path(tmp) / f"r{r}", slow if r > 1 else None))
            print(f"{r} rank(s): wall {runs[-1].wall:.1f}s, rounds "
                  + ", ".join(f"{x.seconds:.1f}s" for x in runs[-1].rounds), flush=True)  # fmt: skip
    base = runs[0]
    print(f"\n{args.cores} cores; 1-rank calibration: " + "; ".join(
        f"round {k}: {x.members} members x {x.examples} examples, {x.candidates} candidates, "
        f"{x.decode_s / x.decoded * 1e3:.0f} ms/example" for k, x in enumerate(base.rounds)))  # fmt: skip
    if slow:
        print(f"rank {slow[0]} slowed {slow[1]:g}x\n")
        print("| ranks | round | measured | static shares (predicted) | dynamic shares (predicted) |")
        print("|---|---|---|---|---|")
        for m in runs[1:]:
            for k, (b, x) in enumerate(zip(base.rounds, m.rounds)):
                print(
                    f"| {m.ranks} | {k} | {x.seconds:.1f} s | {predict_round(b, m.ranks, args.cores, slow):.1f} s | "
                    f"{predict_dynamic(b, m.ranks, slow):.1f} s |"
                )
        return
    print("\n| ranks | what | predicted | measured | error |")
    print("|---|---|---|---|---|")
    for m in runs:
        pairs = [(f"round {k}", predict_round(b, m.ranks, args.cores), x.seconds)
                 for k, (b, x) in enumerate(zip(base.rounds, m.rounds))]  # fmt: skip
        pairs.append(("whole run (wall)", predict_wall(base, m.ranks, args.cores), m.wall))
        for what, p, got in pairs:
            print(f"| {m.ranks} | {what} | {p:.1f} s | {got:.1f} s | {(p - got) / got:+.0%} |")


if __name__ == "__main__":
    main()
