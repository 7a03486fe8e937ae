"""Base accuracy of a model on each built-in task, with the chat template on and off.

    python benchmarks/base_accuracy.py [--examples 64] [--tasks arithmetic countdown]
    python benchmarks/base_accuracy.py --tasks gym --gym letter_counting gcd
    python benchmarks/base_accuracy.py --tasks gym --gym 'chain_sum:{"max_terms": 2, "max_digits": 1}'

Scores the first N examples that ``data_seed=0`` generates, with each task's default
options; these are the figures quoted in the README's task table. ``--gym`` scores the
named reasoning-gym datasets through the ``gym`` task (one row per dataset, options as
JSON after a colon). "distinct
answers" counts different extracted answers: 1 means the model always says the same thing.
Tasks that read data files need them on disk (see conf/task/*.yaml); pass ``--tasks`` to pick.
"""

from __future__ import annotations

import argparse
import json

from corp.models.loading import ModelConfig, load_model
from corp.scoring.scorer import Scorer
from corp.tasks import TASKS, build_task


def configs(names: list[str], gym: list[str]) -> list[tuple[str, object]]:
    """(label, task config) pairs: one per task, and one per gym dataset for ``gym``."""
    out = []
    for name in names:
        if name == "gym":
            for spec in gym:  # "name" or 'name:{"option": value}' (JSON)
                dataset, _, options = spec.partition(":")
                cfg = TASKS["gym"].config_class(dataset=dataset, options=json.loads(options) if options else None)
                out.append((f"gym:{spec}", cfg))
        else:
            out.append((name, TASKS[name].config_class()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--tasks", nargs="+", default=["arithmetic", "countdown"])
    ap.add_argument("--gym", nargs="+", default=["letter_counting"], help="reasoning-gym datasets for --tasks gym")
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    model, tokenizer = load_model(ModelConfig(name_or_path=args.model))
    print(
        "| task | chat template | accuracy | mean reward | distinct answers | n |\n|---|---|---|---|---|---|",
        flush=True,
    )
    for label, cfg in configs(args.tasks, args.gym):
        task = build_task(cfg)
        splits = {"eval": task.examples(0, args.examples)}
        for template in (False, True):
            decoded = Scorer(model, tokenizer, task, splits, template, args.batch_size).score("eval")
            scores, distinct = decoded, len(set(decoded.answers) - {None})  # 1: a constant guess
            on = "on" if template else "off"
            row = (
                f"| {label} | {on} | {scores.accuracy:.1%} | {scores.mean_reward:.3f} | {distinct} | {args.examples} |"
            )
            print(row, flush=True)


if __name__ == "__main__":
    main()
