"""Does a row's answer depend on what else is in its batch? Flip rates per layout.

    python benchmarks/batch_invariance.py [--task arithmetic] [--examples 64] [--dtype float32]
        [--threads 1] [--model embedded]

One split is decoded by the Scorer in several layouts: whole at batch size 64 (the
reference), in two halves, in a shuffled order, and whole at batch sizes 1, 8 and 64.
Printed per layout: the share of examples whose completion differs from the reference
(bitwise, as text) and whose extracted answer differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scorer_throughput import task_config  # noqa: E402
from corp.models.loading import load_model  # noqa: E402
from corp.scoring.scorer import Scorer  # noqa: E402
from corp.tasks.base import SPLITS, build_task  # noqa: E402


def layouts(n: int, seed: int = 0) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Each layout as a list of (batch size, indices) calls covering all n examples."""
    idx = np.arange(n)
    shuffled = np.random.default_rng(seed).permutation(n)
    return {
        "halves": [(64, idx[: n // 2]), (64, idx[n // 2 :])],
        "shuffled": [(64, shuffled)],
        "batch 1": [(1, idx)],
        "batch 8": [(8, idx)],
        "batch 64": [(64, idx)],
    }


def completions(scorer: Scorer, calls: list[tuple[int, np.ndarray]], n: int) -> list[str]:
    out = [""] * n
    for batch_size, indices in calls:
        scorer.batch_size = batch_size
        for i, text in zip(indices, scorer.decode("support", indices)):
            out[int(i)] = text
    return out


def main(args: argparse.Namespace) -> None:
    cfg = task_config(args.task, args.examples)
    cfg.model.dtype = args.dtype
    cfg.model.name_or_path = args.model
    task = build_task(cfg.task)
    splits = task.splits({s: getattr(cfg.task, f"{s}_size") for s in SPLITS}, cfg.task.data_seed)
    model, tok = load_model(cfg.model, "cpu")
    scorer = Scorer(model, tok, task, {"support": splits["support"]}, cfg.model.chat_template, 64)
    n = len(splits["support"])
    ref = completions(scorer, [(64, np.arange(n))], n)
    print(
        f"{args.task}: {n} examples, {model.dtype}, {torch.get_num_threads()} threads; reference: whole split at batch 64"
    )
    for name, calls in layouts(n).items():
        got = completions(scorer, calls, n)
        text = np.mean([a != b for a, b in zip(ref, got)])
        answer = np.mean([task.extract(a) != task.extract(b) for a, b in zip(ref, got)])
        print(f"  {name:9s} completion differs {text:6.1%}   answer differs {answer:6.1%}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="arithmetic")
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    main(args)
