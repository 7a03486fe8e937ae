"""Racing measured online: raced selection with twice the members against full evaluation, at equal budget.

Each arm is a sweep over the run seeds of one (method, racing rule, population size) on one task,
in ``<root>/<task>/<method>_<rule>_<N>/``. A halving race on 2N members with blocks of 8, 16 and
32 of 32 support examples reads 2N x 8 + N x 8 + N/2 x 16 = 32 N member x example evaluations, the
same as N members in full, so the pairs below compare equal selection budgets (CoRP keeps 33 of
64 members in the race, so its pair is full 40 against raced 64: 1,280 against 1,304). Per (task,
seed) the raced arm's test accuracy minus the full arm's; the mean over the pairs and its standard
error (over the pairs, so that it includes the spread between populations)::

    python benchmarks/score_archive.py unpack
    python benchmarks/racing_online.py                        # benchmarks/results/racing_online
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from corp.report.runs import load_runs
from corp.stats import mean_se

ROOT = Path(__file__).resolve().parent / "results" / "racing_online"
# (method, full arm's N, raced arm's N): the raced arm races with racing=halving (first block 8)
PAIRS = [("randopt", 80, 160), ("randopt", 160, 320), ("corp", 40, 64)]


def arms(root: Path) -> dict[tuple, dict[tuple[str, int], tuple[float, int]]]:
    """(method, rule, N) -> (task, seed) -> (test accuracy, support example evaluations)."""
    runs, _ = load_runs(root)
    out: dict[tuple, dict] = defaultdict(dict)
    for run in runs:
        rule = run.value("racing.rule")
        n = int(run.value("perturbation.population_size"))
        # the selection's budget: the population's support evaluations, without CoRP's probe candidates
        budget = run.results.budget
        support_evals = budget.example_evals - budget.candidate_evals * run.results.splits["probe"].n
        out[(run.method, rule, n)][(run.task, run.results.seed)] = (run.results.splits["test"].final, support_evals)
    return out


def table(root: Path) -> str:
    data = arms(root)
    tasks = sorted({t for cells in data.values() for t, _ in cells})
    lines = [
        "| method | arm | " + " | ".join(tasks) + " | mean | support evals (mean) |",
        "|---|---|" + "---|" * len(tasks) + "---|---|",
    ]
    for (method, rule, n), cells in sorted(data.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1] != "none")):
        per_task = []
        for task in tasks:
            acc = [100 * a for (t, _), (a, _) in cells.items() if t == task]
            per_task.append(f"{np.mean(acc):.1f} ± {mean_se(acc):.1f} (n={len(acc)})" if acc else "–")
        mean = 100 * np.mean([a for a, _ in cells.values()])
        evals = np.mean([e for _, e in cells.values()])
        lines.append(f"| {method} | {rule} N={n} | " + " | ".join(per_task) + f" | {mean:.1f} | {evals:,.0f} |")
    lines += [
        "",
        "| method | raced N vs full N | pairs | raced - full (points) | ± SE | per (task, seed) |",
        "|---|---|---|---|---|---|",
    ]
    for method, full_n, raced_n in PAIRS:
        full, raced = data.get((method, "none", full_n), {}), data.get((method, "halving", raced_n), {})
        keys = sorted(set(full) & set(raced))
        if not keys:
            continue
        diffs = [100 * (raced[k][0] - full[k][0]) for k in keys]
        each = ", ".join(f"{t} {s}: {d:+.1f}" for (t, s), d in zip(keys, diffs))
        lines.append(
            f"| {method} | {raced_n} vs {full_n} | {len(keys)} | {np.mean(diffs):+.1f} | "
            f"{mean_se(diffs):.1f} | {each} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT)
    args = ap.parse_args(argv)
    print(table(args.root))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
