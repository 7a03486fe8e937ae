"""Stage 2's share of CoRP's gain: test accuracy of stage 1 alone and of stage 1 + each stage 2 (the
default, the published semantics, the pooled sign test), per task and seed, on the same members.

    python benchmarks/stage2_ablation.py [--set compare|n32]          # the table, from benchmarks/results
    python benchmarks/stage2_ablation.py --set n32 --commands letter_counting task=gym task.dataset=letter_counting

``--set compare`` reads the N = 8 comparison (``compare/<task>/*consolidation=corp*``, the default stage 2)
and ``ablation/<task>/<variant>``; ``--set n32`` reads ``n32/<task>`` and ``ablation_n32/<task>/<variant>``.
``--commands NAME TASK_OVERRIDES...`` prints the commands that make a task's variants from the saved scores
of its comparison runs (every member and base evaluation is reused; each variant decodes only its own
candidates, stage-2 members and final evaluations; ``model.dtype=float32``, the dtype every committed
population was scored in, keeps that true on a host where ``auto`` means bf16). NAME is the task's folder under the set. Add
``consolidation.split_seed=0`` to the overrides when the comparison's CoRP runs were made before stage 2's
split followed the run seed (the N = 8 set has it already).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from corp.results import Results

DEFAULT = "stage 1 + stage 2 (default)"
# label -> (folder under the set's ablation root, the overrides that make it); the default stage 2 is
# the comparison run itself.
VARIANTS = {
    "stage 1 alone": ("stage1_only", "consolidation.stage2_rounds=0"),
    DEFAULT: (None, ""),
    "stage 1 + published stage 2": (
        "published_stage2",
        "consolidation.gate_mode=filter consolidation.stage2_step_unit=absolute consolidation.local_sigma=best_sigma "
        "consolidation.local_sampler=published consolidation.ess_schedule=published",
    ),
    "stage 1 + pooled sign test": ("pooled_sign", "consolidation.stage2_test=pooled_sign"),
}
# set -> (comparison folder, ablation root, population size, overrides every variant needs to match the
# comparison runs: the N = 8 runs were made when the selection/gate split was seed 0 for every run seed)
SETS = {
    "compare": ("compare/{task}", "ablation/{task}", 8, "consolidation.split_seed=0"),
    "n32": ("n32/{task}", "ablation_n32/{task}", 32, ""),
}


def by_seed(root: Path, pattern: str) -> dict[int, Results]:
    runs = {}
    for folder in sorted(root.glob(pattern)):
        if (folder / "results.json").exists():
            res = Results.load(folder)
            runs[res.seed] = res
    return runs


def table(root: Path, name: str) -> None:
    runs_at, ablation, _, _ = SETS[name]
    top = root / ablation.split("/")[0]
    tasks = sorted(p.name for p in top.iterdir() if p.is_dir()) if top.is_dir() else []
    print("| task | variant | seed 0 | seed 1 | seed 2 | mean ± SE | stage-2 rounds accepted |")
    print("|---|---|---|---|---|---|---|")
    for task in tasks:
        for label, (folder, _) in VARIANTS.items():
            pattern = f"{runs_at}/*consolidation=corp*" if folder is None else f"{ablation}/{folder}/*"
            runs = by_seed(root, pattern.format(task=task))
            if not runs:
                continue
            acc = [100 * runs[s].splits["test"].final for s in sorted(runs)]
            mean = sum(acc) / len(acc)
            se = math.sqrt(sum((a - mean) ** 2 for a in acc) / (len(acc) - 1) / len(acc)) if len(acc) > 1 else 0.0
            accepted = sum(int(r.get("stage2/accepted", 0)) for res in runs.values() for r in res.rounds)
            cells = [f"{100 * runs[s].splits['test'].final:.1f}" if s in runs else "–" for s in (0, 1, 2)]
            print(f"| {task} | {label} | {' | '.join(cells)} | {mean:.1f} ± {se:.1f} | {accepted} |")


def commands(name: str, task: str, overrides: list[str]) -> None:
    _, ablation, population, extra = SETS[name]
    group = next((o.split("=", 1)[1] for o in overrides if o.startswith("task=")), task)
    print("R=benchmarks/results")
    for folder, variant in VARIANTS.values():
        if folder is None:
            continue
        words = [f"experiment=compare perturbation.population_size={population} trainer.num_threads=2 model.dtype=float32", " ".join(overrides),
                 f"hydra.sweeper.params.task={group} hydra.sweeper.params.consolidation=corp",
                 "population.load=$R", extra, variant,  # every saved score: the base's evaluations live in compare/
                 f"hydra.sweep.dir=$R/{ablation.format(task=task)}/{folder}"]  # fmt: skip
        print("python train.py " + " \\\n  ".join(w for w in words if w))
    print(f"python benchmarks/stage2_ablation.py --set {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--set", default="compare", choices=sorted(SETS))
    ap.add_argument("--commands", nargs="+", metavar=("NAME", "OVERRIDE"), help="print the commands for one task")
    args = ap.parse_args()
    if args.commands:
        commands(args.set, args.commands[0], args.commands[1:])
    else:
        table(args.root, args.set)


if __name__ == "__main__":
    main()
