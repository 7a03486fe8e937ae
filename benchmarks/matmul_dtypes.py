"""fp32 against bf16 matrix products on this machine, and what ``model.dtype=auto`` picks here.

    python benchmarks/matmul_dtypes.py [--threads 1] [--repeats 3]

The shapes are the embedded model's (SmolLM2-135M: hidden 576, MLP 1536, vocabulary 49152) at
64 and 256 rows. Side by side in one process; the fastest of ``--repeats`` runs counts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corp.models.precision import BF16_CPU_FLAGS, cpu_flags, resolve_dtype  # noqa: E402

SHAPES = [(64, 576, 1536), (256, 1536, 576), (256, 576, 49152)]


def best_ms(a: torch.Tensor, b: torch.Tensor, repeats: int) -> float:
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 1000 * min(times)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    found = sorted(set(BF16_CPU_FLAGS) & cpu_flags())
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"bf16 flags: {', '.join(found) or 'none'}; model.dtype=auto -> {resolve_dtype('auto', 'cpu')}")  # fmt: skip
    print(f"{'product':28s} {'fp32 ms':>9s} {'bf16 ms':>9s} {'fp32/bf16':>9s}")
    for m, k, n in SHAPES:
        a, b = torch.randn(m, k), torch.randn(k, n)
        fp32, bf16 = best_ms(a, b, args.repeats), best_ms(a.bfloat16(), b.bfloat16(), args.repeats)
        print(f"[{m}x{k}]·[{k}x{n}]".ljust(28) + f" {fp32:9.2f} {bf16:9.2f} {fp32 / bf16:9.2f}x")
