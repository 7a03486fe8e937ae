"""The cost model of docs/scaling.md: one CoRP run and one RandOpt run on R ranks.

    python benchmarks/cost_model.py                 # the 1-to-1,000-GPU table of docs/scaling.md
    python benchmarks/cost_model.py --floor-us 0    # the same with no per-step launch floor (CUDA graphs)

A model point (a member, a candidate, an evaluation) is one greedy decode of its examples in
one batch. Its time is ``steps x step time``: the batch runs until its longest row stops
(``max_new_tokens`` steps, rows leave at EOS), and a decoding step costs the largest of three
floors: the launch floor (kernel launches per layer, eager PyTorch), the weights' FLOPs over
the rows still decoding at the card's dense bf16 peak times an efficiency, and the bytes read
(weights once, plus every active row's key/value cache) at the card's bandwidth times an
efficiency. Prefill and perturbation (three passes over the weights) are added.

Ranks share out a population's members (ceil(N / R) each); every other point (stage-1
candidates, stage-2 proposals on the selection and gate halves, line searches, the base and
final evaluations, RandOpt's vote members) is decoded by rank 0 while the others wait, which
is what ``corp/evaluate.py`` does today. ``dealt=True`` prices the alternative where a grid
of independent candidates is dealt over the ranks like a population.

Every hardware figure below is an input, not a measurement of this project: the peaks are
vendor datasheet figures, the efficiencies and the launch floor are assumptions stated as
such in docs/scaling.md, to be replaced by ``benchmarks/gpu_scoring.py``'s output when a GPU
is measured.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Model:
    name: str
    params: float  # weights multiplied per generated token (tied embeddings count once, as the LM head)
    layers: int
    kv_bytes_per_token: float  # bf16 keys + values of one token over all layers


# Qwen2.5 configs (public config.json): 0.5B = 24 layers, 2 KV heads of 64, 494M weights;
# 3B = 36 layers, 2 KV heads of 128, 3.09B weights. KV bytes = layers x 2 (K, V) x kv_heads x head_dim x 2 bytes.
QWEN_05B = Model("Qwen2.5-0.5B", 0.494e9, 24, 24 * 2 * 2 * 64 * 2)
QWEN_3B = Model("Qwen2.5-3B", 3.09e9, 36, 36 * 2 * 2 * 128 * 2)


@dataclass(frozen=True)
class Hardware:
    name: str
    peak_tflops: float  # dense bf16 (vendor datasheet)
    tbps: float  # memory bandwidth (vendor datasheet)
    compute_eff: float = 0.4  # assumption: share of peak a decode GEMM reaches
    memory_eff: float = 0.7  # assumption: share of bandwidth a decode step reaches
    floor_us_per_layer: float = 150.0  # assumption: ~15 kernel launches x ~10 us per layer, eager PyTorch


H100 = Hardware("H100 SXM", 989.0, 3.35)


@dataclass(frozen=True)
class Workload:
    """A published setting (docs/method.md): population, splits, grids, tokens."""

    members: int  # N, population of round 0
    support: int
    probe: int
    test: int
    prompt_tokens: int
    max_new_tokens: int  # the cap: a batch decodes this many steps
    mean_new_tokens: int  # assumption: average completion length (rows leave the batch at EOS)
    stage1_candidates: int = 0  # q x beta x scales, each on probe
    stage2_rounds: int = 0
    local_members: int = 0  # per stage-2 round, on the selection half of support
    proposals: int = 0  # per stage-2 round, each on the selection half and (gate_mode=filter) the gate half
    line_search: int = 0  # per stage-2 round, on probe
    vote_members: int = 0  # RandOpt: top-K members scored on test


def corp_paper(test: int = 500) -> Workload:
    """CoRP's published Countdown setting: N 500, 500 support / 100 probe, 3 x 7 x 6 stage-1 grid,
    3 stage-2 rounds of 100 members, 3 x 7 x 3 proposals each, 3 line-search steps; 1024 new tokens."""
    return Workload(500, 500, 100, test, 150, 1024, 300, stage1_candidates=3 * 7 * 6, stage2_rounds=3,
                    local_members=100, proposals=3 * 7 * 3, line_search=3)  # fmt: skip


def randopt_paper(test: int = 500) -> Workload:
    """RandOpt's published setting: N 5000 on 200 support examples, top-50 vote on test."""
    return Workload(5000, 200, 0, test, 150, 1024, 300, vote_members=50)


def step_seconds(model: Model, hw: Hardware, rows: float, context: float) -> float:
    """One decoding step of ``rows`` active rows at an average ``context`` length: the largest floor."""
    flops = 2 * model.params * rows
    compute = flops / (hw.peak_tflops * 1e12 * hw.compute_eff)
    traffic = 2 * model.params + rows * context * model.kv_bytes_per_token
    memory = traffic / (hw.tbps * 1e12 * hw.memory_eff)
    return max(hw.floor_us_per_layer * 1e-6 * model.layers, compute, memory)


def point_seconds(model: Model, hw: Hardware, w: Workload, examples: int) -> float:
    """One model point on ``examples`` examples in one batch: perturb, prefill, decode, restore."""
    active = examples * w.mean_new_tokens / w.max_new_tokens  # rows still decoding, on average
    context = w.prompt_tokens + w.mean_new_tokens / 2
    decode = w.max_new_tokens * step_seconds(model, hw, active, context)
    prefill = 2 * model.params * examples * w.prompt_tokens / (hw.peak_tflops * 1e12 * hw.compute_eff)
    perturb = 3 * 4 * model.params / (hw.tbps * 1e12 * hw.memory_eff)  # fp32 centre + table window -> live
    return decode + prefill + perturb


@dataclass(frozen=True)
class Cost:
    parallel_s: float  # rank 0's share of the populations
    serial_s: float  # points decoded by rank 0 alone (or dealt, with dealt=True)

    @property
    def total_s(self) -> float:
        return self.parallel_s + self.serial_s


def corp_cost(model: Model, hw: Hardware, w: Workload, ranks: int, dealt: bool = False) -> Cost:
    pt = lambda n: point_seconds(model, hw, w, n)  # noqa: E731
    share = lambda n: math.ceil(n / ranks) if dealt else n  # noqa: E731  (points rank 0 decodes of a grid of n)
    half = w.support // 2
    parallel = math.ceil(w.members / ranks) * pt(w.support)
    parallel += w.stage2_rounds * math.ceil(w.local_members / ranks) * pt(half)
    serial = 2 * (pt(w.support) + pt(w.probe) + pt(w.test))  # base and final evaluations
    serial += share(w.stage1_candidates) * pt(w.probe)
    serial += w.stage2_rounds * (share(w.proposals) * 2 * pt(half) + share(w.line_search) * pt(w.probe))
    return Cost(parallel, serial)


def randopt_cost(model: Model, hw: Hardware, w: Workload, ranks: int, dealt: bool = False) -> Cost:
    pt = lambda n: point_seconds(model, hw, w, n)  # noqa: E731
    parallel = math.ceil(w.members / ranks) * pt(w.support)
    votes = math.ceil(w.vote_members / ranks) if dealt else w.vote_members
    serial = 2 * pt(w.support) + pt(w.test) + votes * pt(w.test)  # base support + test, best member, vote members
    return Cost(parallel, serial)


def exchange_bytes(members: int, examples: int, ranks: int, answer_bytes: int = 16) -> int:
    """What one population's all-gather moves into each rank: float64 rewards, bool correctness and
    pickled answers (``answer_bytes`` each, an assumption) of every rank's padded share."""
    return ranks * math.ceil(members / ranks) * examples * (8 + 1 + answer_bytes)


def table(hw: Hardware, ranks: list[int]) -> str:
    head = "| model | run | " + " | ".join(f"R={r}" for r in ranks) + " |"
    lines = [head, "|" + "---|" * (len(ranks) + 2)]
    for model in (QWEN_05B, QWEN_3B):
        for label, fn, w, dealt in (("CoRP, today", corp_cost, corp_paper(), False),
                                    ("CoRP, candidates dealt", corp_cost, corp_paper(), True),
                                    ("RandOpt, today", randopt_cost, randopt_paper(), False),
                                    ("RandOpt, votes dealt", randopt_cost, randopt_paper(), True)):  # fmt: skip
            cells = [fmt(fn(model, hw, w, r, dealt).total_s) for r in ranks]
            lines.append(f"| {model.name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fmt(seconds: float) -> str:
    return (
        f"{seconds / 3600:.1f} h"
        if seconds >= 3600
        else f"{seconds / 60:.0f} min"
        if seconds >= 60
        else f"{seconds:.0f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--floor-us", type=float, default=H100.floor_us_per_layer, help="launch floor per layer per step")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 8, 64, 125, 500, 1000])
    args = ap.parse_args()
    hw = replace(H100, floor_us_per_layer=args.floor_us)
    w = corp_paper()
    for model in (QWEN_05B, QWEN_3B):
        for n in (w.support, w.probe, w.support // 2):
            active = n * w.mean_new_tokens / w.max_new_tokens
            step = step_seconds(model, hw, active, w.prompt_tokens + w.mean_new_tokens / 2)
            print(
                f"{model.name}: a point on {n} examples {point_seconds(model, hw, w, n):.2f} s "
                f"(step {step * 1e3:.2f} ms, {n * w.mean_new_tokens / point_seconds(model, hw, w, n):.0f} tokens/s)"
            )
        c = corp_cost(model, hw, w, 1)
        print(f"{model.name}: CoRP on 1 rank {fmt(c.total_s)}, serial {c.serial_s / c.total_s:.0%}")
    print(
        f"all-gather per population: round 0 {exchange_bytes(500, 500, 8) / 1e6:.1f} MB, "
        f"stage 2 {exchange_bytes(100, 250, 8) / 1e6:.2f} MB into each of 8 ranks"
    )
    print(f"\n{hw.name}, floor {hw.floor_us_per_layer:.0f} us/layer/step\n")
    print(table(hw, args.ranks))


if __name__ == "__main__":
    main()
