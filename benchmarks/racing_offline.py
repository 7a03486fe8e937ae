"""Racing measured offline: replay race schedules on saved complete reward matrices (nothing is decoded).

For each population with complete rows and each schedule, over many random example orders (a race
decodes examples in split order, and a split is a random draw, so a random column order stands for
another draw), it reports the share of member x example evaluations the race decodes, whether the
raced top-1 has the full top-1's support score (equal or tied), the top-K overlap with the full
ranking, and, for CoRP populations, stage 1's elite weights (cosine of w2 to the full run's, mean
over the (q, beta) grid) and the chosen candidate's direction (cosine at the full run's best q, beta).
A RandOpt population is also replayed as a CoRP one (label ``corp*``: CoRP's default grid on the
same members; no candidate was chosen there, so the direction cosine is the mean over the grid):
that is how the support-128 populations, scored once for RandOpt, answer for CoRP too.
Stage 1 runs through ``corp.consolidate.stage1.merge`` on the raced rewards: survivors' full means,
-inf for dropped members, exactly what ``PopulationScores.selection_rewards`` hands the operator::

    python benchmarks/score_archive.py unpack
    python benchmarks/racing_offline.py                       # the committed support-32 populations
    python benchmarks/racing_offline.py --runs <sweep folder> --orders 200 --as-corp --randopt-keep 5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from corp.consolidate.base import rank_members
from corp.consolidate.corp import CorpConfig
from corp.consolidate.stage1 import elite_reach, merge
from corp.perturb.direction import Direction, stack
from corp.racing import Race, RacingConfig

RESULTS = Path(__file__).resolve().parent / "results"
SCHEDULES = {
    "halving 4": RacingConfig(rule="halving", first_block=4),
    "halving 8": RacingConfig(rule="halving", first_block=8),
    "halving 16": RacingConfig(rule="halving", first_block=16),
    "paired 0.9, 8": RacingConfig(rule="paired", first_block=8, confidence=0.9),
    "paired 0.95, 8": RacingConfig(rule="paired", first_block=8, confidence=0.95),
    "paired 0.99, 8": RacingConfig(rule="paired", first_block=8, confidence=0.99),
    "paired 0.99, 16": RacingConfig(rule="paired", first_block=16, confidence=0.99),
    # added once support 128 was scored (chosen on support only): milder halving, bolder sign tests
    "halving 8, keep 0.7": RacingConfig(rule="halving", first_block=8, fraction=0.7),
    "halving 16, keep 0.6": RacingConfig(rule="halving", first_block=16, fraction=0.6),
    "paired 0.8, 8": RacingConfig(rule="paired", first_block=8, confidence=0.8),
    "paired 0.8, 16": RacingConfig(rule="paired", first_block=16, confidence=0.8),
}
# The control at a race's budget: no race, every member on the first share of the examples.
SUBSAMPLES = {"no race, all on 40 %": 0.4}


def race(cfg: RacingConfig, rewards: np.ndarray, keep: int) -> Race:
    """Replay a race on a complete matrix (columns in the order the race decodes them)."""
    r = Race(cfg, rewards.shape[0], rewards.shape[1], keep)
    for upto in r.points:
        r.decide(upto, rewards)
    return r


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def stage1_weights(matrix, basis, rewards, q, beta) -> tuple[np.ndarray, np.ndarray]:
    """w2 as a vector over all members, and the merged direction's coefficients."""
    m = merge(matrix, basis, rewards, q, beta)
    w = np.zeros(len(rewards))
    w[m.elite] = m.weights
    return w, m.weights @ matrix[m.elite]


def populations(root: Path) -> list[tuple[str, Path]]:
    """(label, run folder) of every run with a complete round-0 population below ``root``."""
    out = []
    for pop in sorted(root.rglob("populations/round_000.npz")):
        run = pop.parent.parent
        config = json.loads((run / "config.json").read_text())
        name = config["consolidation"]["name"]
        with np.load(pop) as data:
            rewards = data["rewards"]
        rows = len(rewards)
        if name in ("randopt", "corp") and rows >= 32 and not np.isnan(rewards).any():
            out.append((f"{config['task'].get('dataset') or config['task']['name']}/{name} N={rows} s{config['seed']}",
                        run))  # fmt: skip
    return out


def measure(run: Path, orders: int, as_corp: bool = False, randopt_keep: int | None = None) -> list[dict]:
    """Rows per schedule for the run's own operator, or (``as_corp``) for CoRP's default stage 1 on its
    members; ``randopt_keep`` replaces RandOpt's ``max(vote_ks)`` (a run that voted on test with K = 1
    only is read as the default vote would race it)."""
    config = json.loads((run / "config.json").read_text())
    cons = config["consolidation"]
    replayed = as_corp and cons["name"] != "corp"  # CoRP's stage 1 on another operator's members
    if replayed:
        default = CorpConfig()
        cons = {"name": "corp", "quantiles": default.quantiles, "betas": default.betas}
    with np.load(run / "populations" / "round_000.npz") as data:
        rewards = data["rewards"].astype(np.float64)
        members = [Direction.from_json(m) for m in json.loads(str(data["members"]))]
    n, e = rewards.shape
    full = rewards.mean(axis=1)
    corp = cons["name"] == "corp"
    keep = elite_reach(n, cons["quantiles"]) if corp else randopt_keep or max(cons["vote_ks"])
    full_rank = rank_members(full)
    grid = [(q, b) for q in cons["quantiles"] for b in cons["betas"]] if corp else []
    if corp:
        matrix, basis = stack(members)
        chosen = None
        if not replayed:
            line = json.loads((run / "rounds.jsonl").read_text().splitlines()[0])["metrics"]
            chosen = grid.index((line["stage1/best_q"], line["stage1/best_beta"]))
        full_w = [stage1_weights(matrix, basis, full, q, b) for q, b in grid]
    rng = np.random.default_rng(0)
    perms = [rng.permutation(e) for _ in range(orders)]
    method = "corp*" if replayed else cons["name"]
    rows = []
    for label, cfg in {**SCHEDULES, **SUBSAMPLES}.items():
        spent, top1, overlap, wcos, dcos = [], [], [], [], []
        for perm in perms:
            if label in SUBSAMPLES:
                t = round(cfg * e)
                sel = rewards[:, perm[:t]].mean(axis=1)
                spent.append(t / e)
            else:
                r = race(cfg, rewards[:, perm], keep)
                sel = np.where(r.alive, full, -np.inf)  # survivors' rows are complete: their full means
                spent.append(r.decoded / (n * e))
            ranked = rank_members(sel)
            top1.append(full[ranked[0]] == full[full_rank[0]])
            overlap.append(len(set(ranked[:keep]) & set(full_rank[:keep])) / keep)
            if corp:
                raced = [stage1_weights(matrix, basis, sel, q, b) for q, b in grid]
                wcos.append(np.mean([cosine(a[0], f[0]) for a, f in zip(raced, full_w)]))
                at = range(len(grid)) if chosen is None else [chosen]
                dcos.append(np.mean([cosine(raced[i][1], full_w[i][1]) for i in at]))
        rows.append({"method": method, "schedule": label, "keep": keep, "decoded": np.mean(spent),
                     "top1": np.mean(top1), "overlap": np.mean(overlap), "w2_cos": np.mean(wcos) if corp else None,
                     "w2_cos_min": np.min(wcos) if corp else None,
                     "chosen_cos": np.mean(dcos) if corp else None})  # fmt: skip
    return rows


def summary(results: list[tuple[str, dict]]) -> None:
    """One line per (method, schedule): means over the populations, the worst population in brackets."""
    print(
        "| method | schedule | populations | keep | decoded | top-1 ties full (worst) | top-K overlap (worst) "
        "| w2 cosine (worst order) | chosen cosine (worst) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for method in ("randopt", "corp", "corp*"):
        for schedule in [*SCHEDULES, *SUBSAMPLES]:
            rows = [r for _, r in results if r["method"] == method and r["schedule"] == schedule]
            if not rows:
                continue
            col = {k: np.array([r[k] for r in rows], dtype=float) for k in rows[0] if k not in ("method", "schedule")}
            corp = method != "randopt"
            w2 = f"{col['w2_cos'].mean():.3f} ({col['w2_cos_min'].min():.3f})" if corp else ""
            ch = f"{col['chosen_cos'].mean():.3f} ({col['chosen_cos'].min():.3f})" if corp else ""
            print(
                f"| {method} | {schedule} | {len(rows)} | {int(col['keep'][0])} | {col['decoded'].mean():.0%} | "
                f"{col['top1'].mean():.0%} ({col['top1'].min():.0%}) | {col['overlap'].mean():.2f} "
                f"({col['overlap'].min():.2f}) | {w2} | {ch} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="*", default=[RESULTS / "compare", RESULTS / "n32"])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--randopt-keep", type=int, help="RandOpt's K (default: the run's max(vote_ks))")
    parser.add_argument("--as-corp", action="store_true", help="also replay CoRP's stage 1 on RandOpt members")
    args = parser.parse_args()
    found = [p for root in args.runs for p in populations(root)]
    if not found:
        raise SystemExit("no complete populations found (run `python benchmarks/score_archive.py unpack` first)")
    results = [
        (label, row) for label, run in found for row in measure(run, args.orders, randopt_keep=args.randopt_keep)
    ]
    if args.as_corp:
        results += [(label, row) for label, run in found if "/randopt " in label
                    for row in measure(run, args.orders, as_corp=True)]  # fmt: skip
    summary(results)
    print()
    print(
        "| population | schedule | keep | decoded | top-1 ties full | top-K overlap | w2 cosine (worst order) "
        "| chosen cosine |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, row in results:
        w2 = "" if row["w2_cos"] is None else f"{row['w2_cos']:.3f} ({row['w2_cos_min']:.3f})"
        ch = "" if row["chosen_cos"] is None else f"{row['chosen_cos']:.3f}"
        print(
            f"| {label.replace('/randopt', '/' + row['method'])} | {row['schedule']} | {row['keep']} | "
            f"{row['decoded']:.0%} | {row['top1']:.0%} | "
            f"{row['overlap']:.2f} | {w2} | {ch} |"
        )


if __name__ == "__main__":
    main()
