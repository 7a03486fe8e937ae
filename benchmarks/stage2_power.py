"""How large a true gain stage 2's acceptance rules let through: the smallest gain that passes with
probability 50 %, for each gate half, under the published two-step rule and ``stage2_test=pooled_sign``.

    python benchmarks/stage2_power.py [--sizes 16:32,32:64,64:64,250:100] [--level 0.05] [--regress 0,0.02,0.05]

Offline and exact (no model, no sampling): each example of a split is, independently, a fix with
probability p_f, a regression with probability p_r and unchanged otherwise; the true gain is p_f - p_r.
The pass probability sums the trinomial probability of every (fixes, regressions) outcome that passes.
Rules, as the code decides them (``corp.consolidate.stage2``; tests/test_corp_operator.py checks that
these formulas agree with it):

- gate only: on the gate half, constructive score > 0 (f - lambda_reg * r > 0) and paired LCB > 0;
- two_step (published): the gate, then on the probe LCB > 0 and no drop (independent examples);
- pooled_sign: on gate half + probe together, constructive score > 0 and exact one-sided sign test
  p <= level.

One alpha is assumed; the line search's choice among its alphas raises every rule's pass rate a little
(for pooled_sign at most by a factor len(line_search) under no gain, a union bound). The "false pass"
columns are the rate at which a step with no gain (p_f = p_r = --churn / 2) passes.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

Z = 1.0  # consolidation.gate_z
LAMBDA_REG = 2.0  # consolidation.lambda_reg


def outcomes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (fixes, regressions) on n examples, as two flat arrays."""
    f, r = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = f + r <= n
    return f[keep], r[keep]


def lcb_passes(f: np.ndarray, r: np.ndarray, n: int, z: float = Z) -> np.ndarray:
    """mean - z * SE > 0 of the paired differences: d > 0 and d^2 (n - 1 + z^2) > z^2 n m (d = f - r, m = f + r)."""
    d, m = f - r, f + r
    return (d > 0) & (d * d * (n - 1 + z * z) > z * z * n * m)


def gate_passes(f: np.ndarray, r: np.ndarray, n: int) -> np.ndarray:
    return (f - LAMBDA_REG * r > 0) & lcb_passes(f, r, n)


def probe_passes(f: np.ndarray, r: np.ndarray, n: int) -> np.ndarray:
    return lcb_passes(f, r, n) & (f >= r)


def sign_tail(mmax: int) -> np.ndarray:
    """tail[m, k] = P(X >= k), X ~ Binomial(m, 1/2), for m, k <= mmax (float)."""
    logfact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, mmax + 1)))])
    tail = np.zeros((mmax + 1, mmax + 2))
    for m in range(mmax + 1):
        k = np.arange(m + 1)
        pmf = np.exp(logfact[m] - logfact[k] - logfact[m - k] - m * math.log(2.0))
        tail[m, : m + 1] = np.cumsum(pmf[::-1])[::-1]
    return tail


def pooled_passes(f: np.ndarray, r: np.ndarray, level: float, tail: np.ndarray) -> np.ndarray:
    return (f - LAMBDA_REG * r > 0) & (tail[f + r, f] <= level * (1 + 1e-12))


def probability(n: int, p_fix: float, p_reg: float, passes: np.ndarray) -> float:
    """P(the outcome on n examples is one that ``passes``), the mask over ``outcomes(n)``."""
    f, r = outcomes(n)
    logfact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])
    same = 1.0 - p_fix - p_reg
    with np.errstate(divide="ignore"):
        logs = [np.log(p) if p > 0 else -np.inf for p in (p_fix, p_reg, same)]
    terms = f * logs[0] if p_fix > 0 else np.where(f == 0, 0.0, -np.inf)
    terms = terms + (r * logs[1] if p_reg > 0 else np.where(r == 0, 0.0, -np.inf))
    rest = n - f - r
    terms = terms + (rest * logs[2] if same > 0 else np.where(rest == 0, 0.0, -np.inf))
    logp = logfact[n] - logfact[f] - logfact[r] - logfact[rest] + terms
    return float(np.sum(np.exp(logp[passes])))


def pass_rates(gate: int, probe: int, p_fix: float, p_reg: float, level: float, tail: np.ndarray) -> dict[str, float]:
    fg, rg = outcomes(gate)
    fp, rp = outcomes(probe)
    fb, rb = outcomes(gate + probe)
    g = probability(gate, p_fix, p_reg, gate_passes(fg, rg, gate))
    return {
        "gate only": g,
        "two_step": g * probability(probe, p_fix, p_reg, probe_passes(fp, rp, probe)),
        "pooled_sign": probability(gate + probe, p_fix, p_reg, pooled_passes(fb, rb, level, tail)),
    }


def gain_at_half(gate: int, probe: int, p_reg: float, rule: str, level: float, tail: np.ndarray) -> float:
    """Smallest p_f - p_r (points) that passes with probability >= 0.5, by bisection to 0.05 points."""
    lo, hi = 0.0, 1.0 - 2.0 * p_reg
    if pass_rates(gate, probe, p_reg + hi, p_reg, level, tail)[rule] < 0.5:
        return math.inf
    while hi - lo > 5e-4:
        mid = 0.5 * (lo + hi)
        if pass_rates(gate, probe, p_reg + mid, p_reg, level, tail)[rule] >= 0.5:
            hi = mid
        else:
            lo = mid
    return 100.0 * hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="16:32,32:64,64:64,250:100", help="gate half:probe pairs")
    ap.add_argument("--level", type=float, default=0.05, help="consolidation.sign_level")
    ap.add_argument("--regress", default="0,0.02,0.05", help="regression rates p_r per example")
    ap.add_argument("--churn", type=float, default=0.1, help="p_f + p_r of the no-gain step for the false-pass rate")
    args = ap.parse_args()
    sizes = [tuple(int(x) for x in pair.split(":")) for pair in args.sizes.split(",")]
    regress = [float(x) for x in args.regress.split(",")]
    tail = sign_tail(max(g + p for g, p in sizes))
    rules = ("gate only", "two_step", "pooled_sign")
    print(f"Smallest true gain (points) passing with probability 50 %; pooled_sign at level {args.level}.")
    print(f"False pass: a step without gain, p_f = p_r = {args.churn / 2:g}.\n")
    head = " | ".join(f"{rule}, p_r={p:g}" for rule in rules for p in regress)
    print(f"| gate half | probe | {head} | " + " | ".join(f"false pass {rule}" for rule in rules) + " |")
    print("|---" * (2 + len(rules) * len(regress) + len(rules)) + "|")
    for gate, probe in sizes:
        cells = [f"{gain_at_half(gate, probe, p, rule, args.level, tail):.1f}" for rule in rules for p in regress]
        null = pass_rates(gate, probe, args.churn / 2, args.churn / 2, args.level, tail)
        false = [f"{100 * null[rule]:.1f} %" for rule in rules]
        print(f"| {gate} | {probe} | " + " | ".join(cells + false) + " |")


if __name__ == "__main__":
    main()
