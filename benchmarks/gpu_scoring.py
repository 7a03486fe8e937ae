"""Member scoring time and tokens/s of a 0.5B- or 1.5B-shaped model against the card's bf16 roofline.

    python benchmarks/gpu_scoring.py --device cuda --dtype bfloat16 --shape 0.5b
        [--task countdown] [--examples 256] [--batch-size 0] [--members 3] [--max-new-tokens 64]
    python benchmarks/gpu_scoring.py --shape 1.5b                                 # Qwen2.5-1.5B's shape
    python benchmarks/gpu_scoring.py --device cpu --dtype float32 --shape tiny   # smoke test

The model has Qwen2.5-0.5B's shape (24 layers, hidden 896, 14/2 heads, MLP 4864, vocab
151936, tied embeddings) or 1.5B's (28 layers, hidden 1536, 12/2 heads, MLP 8960) and random weights: greedy text is arbitrary, so stop strings are
off and every row decodes ``--max-new-tokens`` tokens (rows that emit EOS finish early and
are counted as they are). Prompts are the task's, tokenised with the embedded model's
tokenizer (its ids fit the larger vocabulary).

For ``--members`` perturbed members (fp32 masters in ``ParameterSpace``, live weights in
``--dtype`` with 1-D parameters in fp32, as a run keeps them; ``--noise-mode``, noise on the
device), it times perturb + score + restore, and reports:

- member time, perturb + restore share, examples/s and generated tokens/s;
- achieved TFLOP/s (2 x parameters x processed tokens, attention left out) against the
  card's dense bf16 peak, and decode steps' weight traffic (parameters x bytes per step)
  against its memory bandwidth: the two rooflines a decoding step sits under;
- the last member again through plain ``model.generate``: the speed-up on this card and the
  share of identical completions (bf16 rounds differently in differently shaped batches, so
  a few random-weight near-ties may flip).

Peaks are looked up from the device name (``--peak-tflops`` / ``--peak-tbps`` override).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scorer_throughput import task_config  # noqa: E402
from corp.models.loading import DTYPES, ModelConfig, resolve  # noqa: E402
from corp.models.precision import set_compute_dtype  # noqa: E402
from corp.perturb.direction import Direction  # noqa: E402
from corp.perturb.noise import NoiseSource  # noqa: E402
from corp.perturb.space import ParameterSpace  # noqa: E402
from corp.scoring.plain import plain_generate  # noqa: E402
from corp.scoring.scorer import Scorer  # noqa: E402
from corp.tasks.base import SPLITS, build_task  # noqa: E402

SHAPES = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=49152),
}  # fmt: skip
# Dense bf16 tensor-core peak (TFLOP/s) and memory bandwidth (TB/s) by device-name fragment.
PEAKS = {
    "H200": (989.0, 4.8),
    "H100 PCIe": (756.0, 2.0),
    "H100": (989.0, 3.35),
    "A100": (312.0, 2.0),
    "L40S": (362.0, 0.86),
}


def peaks(device: torch.device, tflops: float | None, tbps: float | None) -> tuple[float | None, float | None]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        found = next((v for k, v in PEAKS.items() if k in name), (None, None))
        return tflops or found[0], tbps or found[1]
    return tflops, tbps


def build(shape: str, dtype: torch.dtype, device: torch.device):
    cfg = Qwen2Config(**SHAPES[shape], tie_word_embeddings=True, max_position_embeddings=4096, eos_token_id=2,
                      pad_token_id=2, bos_token_id=1)  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=dtype).to(device).eval()
    model.requires_grad_(False)
    return model


def main(args: argparse.Namespace) -> None:
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    cfg = task_config(args.task, args.examples)
    task = build_task(cfg.task)
    task.stop = ()  # random weights: decode the full length
    task.max_new_tokens = args.max_new_tokens
    splits = task.splits({s: getattr(cfg.task, f"{s}_size") for s in SPLITS}, cfg.task.data_seed)
    tok = AutoTokenizer.from_pretrained(resolve(ModelConfig()))  # the embedded model's tokenizer
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = build(args.shape, torch.float32, device)
    params = sum(p.numel() for p in model.parameters())
    space = ParameterSpace(model, NoiseSource(args.noise_mode))
    set_compute_dtype(model, dtype)
    space.restore()
    scorer = Scorer(model, tok, task, {"support": splits["support"]}, cfg.model.chat_template, args.batch_size)
    prompts = scorer.prompt_ids("support")
    n = len(prompts)
    print(
        f"{args.shape} model: {params / 1e6:.0f}M parameters, {device} {model.dtype}"
        f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}; "
        f"{args.task}: {n} prompts of {min(map(len, prompts))}-{max(map(len, prompts))} tokens, "
        f"{args.max_new_tokens} new tokens, batch size {scorer.batch_size}"
    )

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    scorer.score("support", np.arange(min(n, scorer.batch_size)))  # warm-up (kernels, allocator)
    perturb = score = 0.0
    tokens = 0
    for k in range(args.members):
        sync()
        t0 = time.perf_counter()
        space.apply(Direction.from_seed(1000 + k, 1e-3))
        sync()
        t1 = time.perf_counter()
        before = scorer.tokens_generated
        decoded = scorer.score("support")
        sync()
        t2 = time.perf_counter()
        space.restore()
        sync()
        t3 = time.perf_counter()
        perturb += (t1 - t0) + (t3 - t2)
        score += t2 - t1
        tokens = scorer.tokens_generated - before
    perturb, score = perturb / args.members, score / args.members
    prompt_tokens = sum(len(p) for p in prompts)
    print(
        f"member: {perturb + score:.3f}s = perturb + restore {perturb:.3f}s ({perturb / score:.1%} of scoring) + scoring {score:.3f}s"
    )
    print(f"scoring: {n / score:.1f} examples/s, {tokens / score:.0f} generated tokens/s ({tokens} tokens)")
    tflops, tbps = peaks(device, args.peak_tflops, args.peak_tbps)
    achieved = 2 * params * (prompt_tokens + tokens) / score / 1e12  # upper bound: shared prefix counted per row
    line = f"compute: {achieved:.2f} TFLOP/s (2 x params x prompt+generated tokens)"
    print(line + (f" = {achieved / tflops:.1%} of {tflops:.0f} TFLOP/s bf16 peak" if tflops else ""))
    steps = args.max_new_tokens * -(-n // scorer.batch_size)
    traffic = params * torch.finfo(dtype).bits / 8 * steps / score / 1e12
    print(
        f"decode weight traffic: {traffic:.2f} TB/s over {steps} steps"
        + (f" = {traffic / tbps:.1%} of {tbps:.2f} TB/s" if tbps else "")
    )
    if args.baseline:
        sync()
        t0 = time.perf_counter()
        with space.perturbed(Direction.from_seed(1000 + args.members - 1, 1e-3)):  # the last member again
            texts, _ = plain_generate(model, tok, prompts, task.max_new_tokens, (), scorer.batch_size)
        sync()
        plain = time.perf_counter() - t0
        same = np.mean([a == b for a, b in zip(texts, decoded.completions)])
        print(
            f"plain model.generate on the same prompts: {plain:.3f}s (perturb included) -> scorer speed-up "
            f"{plain / (perturb + score):.2f}x per member; same completion on {same:.1%} of examples"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    ap.add_argument("--shape", default="0.5b", choices=sorted(SHAPES))
    ap.add_argument("--task", default="countdown")
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=0, help="0: from free memory")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--noise-mode", default="table")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--peak-tbps", type=float, default=None)
    ap.add_argument("--no-baseline", dest="baseline", action="store_false")
    main(ap.parse_args())
