"""Gaussian draws per second on this CPU, side by side in one process:

    python benchmarks/noise_rate.py [--threads 2] [--repeats 3]

Over the embedded model's 272 tensor shapes (134.5M weights), fastest of ``--repeats``:
1. one ``torch.randn`` stream per tensor ("independent" mode) and ``NoiseSource("chunked")``
   blocks, each at 1 and at ``--threads`` threads;
2. the chunked draw with a whole-tensor torch ``add`` after each tensor (what the space did
   before the add moved into the workers) against ``NoiseSource.add_noise``, which adds each
   block in the thread that drew it;
3. NumPy's fastest generator (SFC64, float32 ziggurat) on one thread, for comparison.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corp.perturb.noise import NoiseSource  # noqa: E402

# SmolLM2-135M: tied embedding, then per layer q, k, v, o, gate, up, down and two norms, final norm
SHAPES = [("embed", 49152 * 576)]
for layer in range(30):
    SHAPES += [(f"{layer}.q", 576 * 576), (f"{layer}.k", 192 * 576), (f"{layer}.v", 192 * 576),
               (f"{layer}.o", 576 * 576), (f"{layer}.gate", 1536 * 576), (f"{layer}.up", 1536 * 576),
               (f"{layer}.down", 1536 * 576), (f"{layer}.norm1", 576), (f"{layer}.norm2", 576)]  # fmt: skip
SHAPES.append(("norm", 576))
TOTAL = sum(n for _, n in SHAPES)


def fastest(fn, repeats: int) -> float:
    best = float("inf")
    for r in range(repeats):
        t = time.perf_counter()
        fn(r)
        best = min(best, time.perf_counter() - t)
    return best


def report(label: str, seconds: float) -> None:
    print(f"{label:58s} {seconds:6.3f}s  {TOTAL / seconds / 1e6:5.0f}M normals/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    largest = max(n for _, n in SHAPES)
    buf, centre, out = torch.empty(largest), torch.randn(largest), torch.empty(largest)
    print(f"{TOTAL / 1e6:.1f}M weights in {len(SHAPES)} tensors")

    for threads in sorted({1, args.threads}):
        torch.set_num_threads(threads)
        for mode in ("independent", "chunked"):
            src = NoiseSource(mode)
            draw = lambda r, src=src: [src.noise(r, name, (n,), out=buf[:n]) for name, n in SHAPES]  # noqa: E731
            report(f"{mode} draw, {threads} thread(s)", fastest(draw, args.repeats))

    torch.set_num_threads(args.threads)
    src = NoiseSource("chunked")

    def draw_then_add(r: int) -> None:
        for name, n in SHAPES:
            eps = src.noise(r, name, (n,), out=buf[:n])
            torch.add(centre[:n], eps, alpha=1e-3, out=out[:n])

    def add_in_workers(r: int) -> None:
        for name, n in SHAPES:
            src.add_noise(r, name, [(out[:n], 1e-3, centre[:n])], scratch=buf)

    report(f"chunked draw, then a torch add per tensor, {args.threads} threads", fastest(draw_then_add, args.repeats))
    report(
        f"chunked add_noise (add in the drawing thread), {args.threads} threads", fastest(add_in_workers, args.repeats)
    )

    arr = np.empty(largest, np.float32)

    def numpy_draw(r: int) -> None:
        for i, (_, n) in enumerate(SHAPES):
            np.random.Generator(np.random.SFC64(r * 1000 + i)).standard_normal(n, dtype=np.float32, out=arr[:n])

    report("numpy SFC64 float32 draw, 1 thread", fastest(numpy_draw, args.repeats))


if __name__ == "__main__":
    main()
