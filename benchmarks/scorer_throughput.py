"""Scorer throughput against plain ``model.generate``, side by side in one process.

    python benchmarks/scorer_throughput.py [--tasks arithmetic countdown] [--examples 128]
        [--batch-size 64] [--repeats 3] [--device cpu] [--dtype auto] [--threads N] [--profile]

For each task, the same prompts (the task's support split, tokenised by the scorer) are
decoded by both paths at the same batch size: the baseline is ``model.generate`` on
left-padded batches in split order with Hugging Face's stop strings
(``corp.scoring.plain``); the optimised path is ``Scorer.score``. The two paths alternate
``--repeats`` times over all the examples; on a shared machine the fastest run of each is
the least disturbed, so the speed-up is the ratio of those (the ratio of medians is printed
too), next to the ratio of process CPU time, which a busy machine disturbs less (with
one thread it counts the work done; with more, idle threads spinning at barriers count
too). Printed: seconds and examples/s of each path, the speed-up, and the share of
examples whose extracted answer (and whole completion) is identical.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corp.config import register_configs, validate  # noqa: E402
from corp.models.loading import load_model  # noqa: E402
from corp.scoring.plain import plain_generate  # noqa: E402
from corp.scoring.scorer import Scorer, cut  # noqa: E402
from corp.tasks.base import SPLITS, build_task  # noqa: E402


def task_config(task: str, examples: int):
    register_configs()
    overrides = ["output_dir=/tmp/unused", f"task={task}", f"task.support_size={examples}"]
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return validate(compose(config_name="config", overrides=overrides))


def compare(
    name: str, examples: int, batch_size: int | None, repeats: int, device: str, dtype: str, profile: bool = False
) -> dict:
    cfg = task_config(name, examples)
    cfg.model.dtype = dtype
    task = build_task(cfg.task)
    splits = task.splits({s: getattr(cfg.task, f"{s}_size") for s in SPLITS}, cfg.task.data_seed)
    model, tok = load_model(cfg.model, device)
    bs = batch_size or cfg.model.batch_size
    scorer = Scorer(model, tok, task, {"support": splits["support"]}, cfg.model.chat_template, bs)
    prompts = scorer.prompt_ids("support")
    prefix = scorer.decoder.encode_prefix(prompts)
    print(
        f"\n== {name}: {len(prompts)} examples, prompts {min(map(len, prompts))}-{max(map(len, prompts))} tokens, "
        f"shared prefix {prefix.length if prefix else 0} tokens, max_new_tokens {task.max_new_tokens}, "
        f"batch size {bs}, {torch.get_num_threads()} threads, {device}/{model.dtype}"
    )
    scorer.score("support", np.arange(min(bs, len(prompts))))  # warm-up, not timed
    plain_s: list[float] = []
    fast_s: list[float] = []
    plain_cpu: list[float] = []
    fast_cpu: list[float] = []
    for _ in range(repeats):  # alternate, so a change in machine load hits both paths
        t0, c0 = time.perf_counter(), time.process_time()
        texts, plain_tokens = plain_generate(model, tok, prompts, task.max_new_tokens, task.stop, bs)
        t1, c1 = time.perf_counter(), time.process_time()
        before = scorer.tokens_generated
        decoded = scorer.score("support")
        t2, c2 = time.perf_counter(), time.process_time()
        plain_s.append(t1 - t0)
        fast_s.append(t2 - t1)
        plain_cpu.append(c1 - c0)
        fast_cpu.append(c2 - c1)
        fast_tokens = scorer.tokens_generated - before
    plain_text = [cut(t, task.stop) for t in texts]
    fast_text = decoded.completions
    same_answer = np.mean([task.extract(a) == task.extract(b) for a, b in zip(plain_text, fast_text)])
    same_text = np.mean([a == b for a, b in zip(plain_text, fast_text)])
    n = len(prompts)
    best_plain, best_fast = min(plain_s), min(fast_s)
    print(f"runs (s): plain {' '.join(f'{t:.2f}' for t in plain_s)} | scorer {' '.join(f'{t:.2f}' for t in fast_s)}")
    print(f"plain model.generate: {best_plain:8.2f}s  {n / best_plain:7.2f} examples/s  ({plain_tokens} tokens)")
    print(f"corp Scorer:          {best_fast:8.2f}s  {n / best_fast:7.2f} examples/s  ({fast_tokens} tokens)")
    print(
        f"speed-up: {best_plain / best_fast:.2f}x (fastest run of each), "
        f"{np.median(plain_s) / np.median(fast_s):.2f}x (medians)"
    )
    print(
        f"process CPU seconds (fastest): plain {min(plain_cpu):.2f}, scorer {min(fast_cpu):.2f} "
        f"-> {min(plain_cpu) / min(fast_cpu):.2f}x less work"
    )
    print(f"same extracted answer: {same_answer:.2%}   same completion: {same_text:.2%}  (of {n})")
    for a, b in zip(plain_text, fast_text):
        if task.extract(a) != task.extract(b):
            print(f"  differs: plain {a!r} vs scorer {b!r}")
    if profile:  # where the scorer's time goes: shares of self CPU time per operator
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            scorer.score("support")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
    return {"task": name, "speedup": best_plain / best_fast, "agreement": same_answer}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", nargs="+", default=["arithmetic", "countdown"])
    ap.add_argument("--examples", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=None, help="default: model.batch_size of the config")
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs of each path; the fastest counts")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--profile", action="store_true", help="also print the scorer's top operators by CPU time")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [
        compare(t, args.examples, args.batch_size, args.repeats, args.device, args.dtype, args.profile)
        for t in args.tasks
    ]
    print("\nsummary: " + "; ".join(f"{r['task']} {r['speedup']:.2f}x, agreement {r['agreement']:.2%}" for r in rows))
