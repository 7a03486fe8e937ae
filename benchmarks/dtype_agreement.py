"""How often bf16 scoring gives the same answers as fp32, on the same split and layout.

    python benchmarks/dtype_agreement.py [--task arithmetic] [--examples 64] [--threads 1]

The split is decoded twice by the Scorer at batch size 64: with the model in fp32, then with
it cast as a bf16 run casts it (``set_compute_dtype``: matrices bf16, 1-D parameters fp32).
Printed: each dtype's accuracy, the share of identical completions and of identical
extracted answers, and the decode time of each (a ratio: where the CPU lacks bf16 units,
torch emulates bf16 products and bf16 is much slower).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scorer_throughput import task_config  # noqa: E402
from corp.models.loading import load_model  # noqa: E402
from corp.models.precision import set_compute_dtype  # noqa: E402
from corp.scoring.scorer import Scorer  # noqa: E402
from corp.tasks.base import SPLITS, build_task  # noqa: E402


def main(args: argparse.Namespace) -> None:
    cfg = task_config(args.task, args.examples)
    task = build_task(cfg.task)
    splits = task.splits({s: getattr(cfg.task, f"{s}_size") for s in SPLITS}, cfg.task.data_seed)
    model, tok = load_model(cfg.model, compute=False)
    scorer = Scorer(model, tok, task, {"support": splits["support"]}, cfg.model.chat_template, 64)
    runs = {}
    for dtype in (torch.float32, torch.bfloat16):
        set_compute_dtype(model, dtype)
        t = time.perf_counter()
        runs[dtype] = scorer.score("support")
        runs[dtype].seconds = time.perf_counter() - t
    a, b = runs[torch.float32], runs[torch.bfloat16]
    same_text = np.mean([x == y for x, y in zip(a.completions, b.completions)])
    same_answer = np.mean([x == y for x, y in zip(a.answers, b.answers)])
    print(f"{args.task}: {len(a.completions)} examples, {torch.get_num_threads()} threads")
    print(f"accuracy: fp32 {a.accuracy:.3f}, bf16 {b.accuracy:.3f}")
    print(f"same completion {same_text:.1%}, same answer {same_answer:.1%}")
    print(f"decode time: fp32 {a.seconds:.1f}s, bf16 {b.seconds:.1f}s (fp32/bf16 = {a.seconds / b.seconds:.2f}x)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="arithmetic")
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    main(args)
