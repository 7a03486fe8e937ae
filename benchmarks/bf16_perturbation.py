"""How much of a perturbation survives in bf16 live weights, per parameter class.

    python benchmarks/bf16_perturbation.py [--model embedded] [--sigmas 1e-3 2e-3 4e-3]

For every perturbed tensor of the model, and each sigma: the intended perturbation is
sigma * eps (eps from the default noise mode, seed 0), and the applied one is what a member
actually changes, bf16(w + sigma * eps) - bf16(w). Printed per parameter class: the relative
error ||applied - intended|| / ||intended||, the gain <applied, intended> / ||intended||^2
(1: the rounding adds noise but keeps the direction's length; below 1: it shrinks it), and the
share of elements whose perturbation rounds away to exactly nothing. 1-D parameters are shown
twice: as bf16 would apply them, and as a run applies them (``set_compute_dtype`` keeps them fp32).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corp.models.loading import ModelConfig, load_model  # noqa: E402
from corp.perturb.noise import NoiseSource  # noqa: E402


def parameter_class(name: str, param: torch.Tensor) -> str:
    if param.ndim == 1:
        return "norm gains / biases (1-D)"
    if "embed" in name or "lm_head" in name:
        return "embeddings"
    match = re.search(r"(q|k|v|o|gate|up|down)_proj", name)
    return f"{match.group(0)}" if match else "other matrices"


def main(args: argparse.Namespace) -> None:
    model, _ = load_model(ModelConfig(name_or_path=args.model, chat_template=False), compute=False)
    noise = NoiseSource("chunked")
    rows: dict[tuple[str, float], list[float]] = defaultdict(lambda: [0.0] * 5)  # err2, want2, dot, lost, n

    def add(cls: str, sigma: float, want: torch.Tensor, applied: torch.Tensor) -> None:
        row = rows[(cls, sigma)]
        row[0] += float(((applied - want) ** 2).sum())
        row[1] += float((want**2).sum())
        row[2] += float((applied * want).sum())
        row[3] += float((applied == 0).sum())
        row[4] += want.numel()

    for name, p in model.named_parameters():
        w = p.detach().float().view(-1)
        eps = noise.noise(0, name, w.shape)
        for sigma in args.sigmas:
            want = sigma * eps
            cls = parameter_class(name, p)
            add(
                cls + (" as bf16" if p.ndim == 1 else ""),
                sigma,
                want,
                (w + want).bfloat16().float() - w.bfloat16().float(),
            )
            if p.ndim == 1:
                add(cls + " kept fp32", sigma, want, (w + want) - w)
    print(f"{args.model}: the applied perturbation in bf16 live weights (fp32 masters), against the intended one")
    print(f"{'class':38s} {'sigma':>7s} {'rel. error':>10s} {'gain':>6s} {'rounded to 0':>13s}")
    for (cls, sigma), (err2, want2, dot, lost, n) in sorted(rows.items()):
        print(f"{cls:38s} {sigma:7.0e} {(err2 / want2) ** 0.5:10.1%} {dot / want2:6.3f} {lost / n:13.1%}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[1e-3, 2e-3, 4e-3])
    main(ap.parse_args())
