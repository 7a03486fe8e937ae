"""Base accuracy of a model on each built-in task, with the chat template on and off.

    python benchmarks/base_accuracy.py [--examples 64] [--tasks arithmetic countdown]

Scores the first N examples that ``data_seed=0`` generates, with each task's default
options; these are the figures quoted in the README's task table.
"""

from __future__ import annotations

import argparse

from corp.models.loading import ModelConfig, load_model
from corp.scoring.scorer import Scorer
from corp.tasks import TASKS, build_task


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--tasks", nargs="+", default=sorted(TASKS))
    ap.add_argument("--model", default="embedded")
    args = ap.parse_args()
    model, tokenizer = load_model(ModelConfig(name_or_path=args.model))
    print("| task | chat template | accuracy | mean reward | n |\n|---|---|---|---|---|")
    for name in args.tasks:
        task = build_task(TASKS[name].config_class())
        splits = {"eval": task.examples(0, args.examples)}
        for template in (False, True):
            scores = Scorer(model, tokenizer, task, splits, template, 64).score("eval").scores
            on = "on" if template else "off"
            print(f"| {name} | {on} | {scores.accuracy:.1%} | {scores.mean_reward:.3f} | {args.examples} |", flush=True)


if __name__ == "__main__":
    main()
