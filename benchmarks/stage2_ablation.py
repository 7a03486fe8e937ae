"""Stage 2's share of CoRP's gain: test accuracy of stage 1 alone, of stage 1 + stage 2 as committed
in the matched-budget comparison, and of stage 2 with the published semantics, per task and seed.

    python benchmarks/stage2_ablation.py            # from the committed folders under benchmarks/results

Reads ``compare/<task>/*consolidation=corp*`` (the default stage 2) and ``ablation/<task>/<variant>``
(``stage1_only``: ``consolidation.stage2_rounds=0``; ``published_stage2``: ``gate_mode=filter
local_sigma=sqrt_lambda stage2_step_unit=absolute``). Commands that made them: BENCHMARKS.md §1.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from corp.results import Results

VARIANTS = {"stage 1 alone": "ablation/{task}/stage1_only/*", "stage 1 + stage 2 (default)":
            "compare/{task}/*consolidation=corp*", "stage 1 + published stage 2": "ablation/{task}/published_stage2/*"}  # fmt: skip


def by_seed(root: Path, pattern: str) -> dict[int, Results]:
    runs = {}
    for folder in sorted(root.glob(pattern)):
        if (folder / "results.json").exists():
            res = Results.load(folder)
            runs[res.seed] = res
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    tasks = sorted(p.name for p in (args.root / "ablation").iterdir() if p.is_dir())
    print("| task | variant | seed 0 | seed 1 | seed 2 | mean ± SE | stage-2 rounds accepted |")
    print("|---|---|---|---|---|---|---|")
    for task in tasks:
        for label, pattern in VARIANTS.items():
            runs = by_seed(args.root, pattern.format(task=task))
            if not runs:
                continue
            acc = [100 * runs[s].splits["test"].final for s in sorted(runs)]
            mean = sum(acc) / len(acc)
            se = math.sqrt(sum((a - mean) ** 2 for a in acc) / (len(acc) - 1) / len(acc)) if len(acc) > 1 else 0.0
            accepted = sum(int(r.get("stage2/accepted", 0)) for res in runs.values() for r in res.rounds)
            cells = [f"{100 * runs[s].splits['test'].final:.1f}" if s in runs else "–" for s in (0, 1, 2)]
            print(f"| {task} | {label} | {' | '.join(cells)} | {mean:.1f} ± {se:.1f} | {accepted} |")


if __name__ == "__main__":
    main()
