"""Why CoRP's stage-2 proposals fail: the per-round tables of committed runs, as Markdown.

Reads every ``rounds.jsonl`` below the given folders (default: benchmarks/results), with the
run's ``config.json`` beside it when present, and prints one table per view::

    python benchmarks/stage2_rounds.py                       # every table
    python benchmarks/stage2_rounds.py --table rounds gate   # some of them
    python benchmarks/stage2_rounds.py path/to/sweep --table summary

Runs without CoRP keys (soup, es, randopt) are skipped; a key a run lacks prints as "—".
Nothing is evaluated: every number is read from the logs or recomputed from logged scores.
The write-up of what these tables show is benchmarks/stage2_diagnosis.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DASH = "—"
# Grid corners of the published stage 1 (scripts/run.sh) that the tables compare against.
PUBLISHED_QUANTILES = (0.5, 0.7, 0.9)
PUBLISHED_BETAS = (2.0, 20.0, 50.0)


@dataclass
class Run:
    label: str
    config: dict
    stage1: dict | None = None  # the round-0 record
    stage2: list[dict] = field(default_factory=list)  # stage-2 round records, in order

    def consolidation(self, key: str, default=None):
        return self.config.get("consolidation", {}).get(key, default)

    @property
    def half_sizes(self) -> tuple[int | None, int | None]:
        """(selection, gate) half sizes, as ``split_support`` cuts them (the gate gets the odd one)."""
        n = self.config.get("task", {}).get("support_size")
        return (None, None) if n is None else (n // 2, n - n // 2)


# -- loading ------------------------------------------------------------------------------------
def _label(path: Path, root: Path) -> str:
    """``group/task/<job number>`` for sweep folders named ``<number>_<overrides>``."""
    rel = path.parent.relative_to(root) if path.parent != root else Path(path.parent.name)
    parts = list(rel.parts)
    parts[-1] = parts[-1].split("_", 1)[0]
    return "/".join(parts) if parts else str(rel)


def load_runs(roots: list[Path]) -> tuple[list[Run], int]:
    """CoRP runs below ``roots`` (sorted by label) and how many other runs were skipped."""
    runs, skipped = [], 0
    for root in roots:
        if not root.exists():
            sys.exit(f"folder {root} does not exist")
        for path in sorted(root.rglob("rounds.jsonl")):
            cfg_path = path.parent / "config.json"
            config = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
            run = Run(_label(path, root), config)
            for line in path.read_text().splitlines():
                if not line.strip():
                    continue
                record = json.loads(line)
                metrics = record.get("metrics", {})
                if any(k.startswith("stage2/") for k in metrics):
                    run.stage2.append(record)
                elif any(k.startswith("stage1/") for k in metrics):
                    run.stage1 = record
            if run.stage1 is None and not run.stage2:
                skipped += 1
            else:
                runs.append(run)
    labels = Counter(r.label for r in runs)
    for r in runs:  # two roots with the same layout: keep labels apart
        if labels[r.label] > 1:
            r.label = r.config.get("output_dir", r.label)
    return sorted(runs, key=lambda r: r.label), skipped


# -- formatting ---------------------------------------------------------------------------------
def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        if value != 0 and abs(value) < 1e-2:
            return f"{value:.2e}"
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value)}"
    return str(value)


def table(title: str, header: list[str], rows: list[list], note: str = "") -> str:
    lines = [f"### {title}", ""]
    if note:
        lines += [note, ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def metric(record: dict | None, key: str):
    return None if record is None else record.get("metrics", {}).get(key)


def detail(record: dict | None, key: str) -> list:
    return [] if record is None else record.get("details", {}).get(key, []) or []


# -- derived numbers ----------------------------------------------------------------------------
def fixes_regressions(score, mean, n, lambda_reg) -> tuple[int | None, int | None]:
    """(fixes, regressions) on n examples from the constructive score (f - lambda r)/n and the mean
    paired difference (f - r)/n; unknown when lambda_reg == 1 (the two coincide) or a number is missing."""
    if None in (score, mean, n, lambda_reg) or lambda_reg == 1:
        return None, None
    r = n * (mean - score) / (lambda_reg - 1.0)
    f = n * mean + r
    return round(f), round(r)


def lcb_passes(f: int, r: int, z: float) -> bool:
    """Whether mean - z*SE > 0 for f fixes and r regressions (the rest unchanged), any n >= 2.

    With d = f - r and m = f + r the sample variance of the paired differences is
    (m - d^2/n)/(n - 1), so mean > z*SE reduces to d > 0 and d^2 (n - 1 + z^2) > z^2 n m;
    at z = 1 that is d^2 > m, the same for every n."""
    d, m = f - r, f + r
    if d <= 0:
        return False
    return d * d > z * z * m if z == 1.0 else None  # general z needs n; only z = 1 is tabulated


def best_sigma(stage1: dict | None) -> float | None:
    """The member scale whose stage-0 members had the best mean reward (the published initial sigma)."""
    rows = (stage1 or {}).get("population", {}).get("reward_by_sigma") or []
    rows = [r for r in rows if r.get("reward_mean") is not None]
    return max(rows, key=lambda r: r["reward_mean"])["sigma"] if rows else None


def elite(rewards: np.ndarray, q: float) -> np.ndarray:
    """Members with reward >= the q-quantile (ties enter), as ``corp.consolidate.stage1.elite_indices``."""
    return np.flatnonzero(rewards >= np.quantile(rewards, q))


def min_elite(n: int, q: float) -> int:
    return n - math.ceil(q * (n - 1) - 1e-9)


def first_pass(rewards: np.ndarray, q: float, beta: float) -> tuple[int, float, float]:
    """(elite size, ESS, entropy in nats) of the first-pass weights softmax(beta * r) over the elite."""
    r = rewards[elite(rewards, q)]
    w = np.exp(beta * (r - r.max()))
    w /= w.sum()
    return len(r), float(1.0 / np.sum(w**2)), float(-np.sum(w * np.log(np.clip(w, 1e-300, None))))


# -- tables -------------------------------------------------------------------------------------
def _le(a, b, strict: bool = False) -> bool:
    """a <= b (a < b when strict); False when either is missing, so a missing key is never counted."""
    if a is None or b is None:
        return False
    return a < b if strict else a <= b


def t_rounds(runs: list[Run]) -> str:
    rows = []
    for run in runs:
        n_sel, n_gate = run.half_sizes
        lam_reg = run.consolidation("lambda_reg")
        for rec in run.stage2:
            m = rec.get("metrics", {})
            f, r = fixes_regressions(m.get("stage2/gate_score"), m.get("stage2/gate_mean_diff"), n_gate, lam_reg)
            ls = detail(rec, "stage2/line_search")
            picked = next((x for x in ls if x.get("picked")), None)
            line = DASH
            if picked:
                line = (
                    f"α={fmt(picked.get('alpha'))}: {fmt(picked.get('probe_acc'))} vs "
                    f"{fmt(m.get('stage2/centre_probe_acc'))}, LCB {fmt(picked.get('probe_lcb'))}"
                )
            members = rec.get("population", {}).get("size", m.get("population/size"))
            step = f"{fmt(m.get('stage2/best_q'))}/{fmt(m.get('stage2/best_beta'))}/{fmt(m.get('stage2/best_step'))}"
            rows.append(
                [
                    run.label,
                    int(m["stage2/round"]) if "stage2/round" in m else None,
                    m.get("stage2/sigma"),
                    m.get("stage2/lambda"),
                    m.get("stage2/eta"),
                    members,
                    m.get("stage2/positive"),
                    m.get("stage2/member_score_max"),
                    m.get("stage2/member_score_mean"),
                    m.get("stage2/proposals"),
                    step,
                    m.get("stage2/selection_score"),
                    m.get("stage2/gate_score"),
                    DASH if f is None else f"{f}/{r}",
                    m.get("stage2/gate_lcb"),
                    bool(m.get("stage2/gated")) if "stage2/gated" in m else None,
                    line,
                    bool(m.get("stage2/accepted")) if "stage2/accepted" in m else None,
                ]
            )
    header = [
        "run", "k", "σ", "λ", "η", "members", "positive", "best member", "mean member", "proposals",
        "best q/β/g", "sel score", "gate score", "gate fix/reg", "gate LCB", "gated", "line search", "accepted",
    ]  # fmt: skip
    note = (
        "One row per stage-2 round. Scores are constructive, (fixes − λ_reg·regressions)/n, against the "
        "centre; 'sel'/'gate' belong to the one proposal picked on the selection half, the only one "
        "scored on the gate half. gate fix/reg is solved from the gate score and the gate's mean paired "
        "difference."
    )
    return table("Stage-2 rounds", header, rows, note)


def t_proposals(runs: list[Run]) -> str:
    rows = []
    for run in runs:
        for rec in run.stage2:
            m = rec.get("metrics", {})
            sigma = m.get("stage2/sigma")
            for p in detail(rec, "stage2/proposal_scores"):
                scale = p.get("scale")
                norm = None if None in (scale, sigma) else scale * sigma
                rows.append(
                    [
                        run.label,
                        m.get("stage2/round"),
                        p.get("q"),
                        p.get("beta"),
                        p.get("step"),
                        scale,
                        norm,
                        p.get("selection_score"),
                        p.get("selection_reward_gain"),
                        bool(p.get("best")),
                        m.get("stage2/gate_score") if p.get("best") else None,
                    ]
                )
    header = ["run", "k", "q", "β", "g", "scale", "≈‖step‖", "sel score", "sel reward gain", "picked", "gate score"]
    note = "Every proposal (duplicates dropped). ≈‖step‖ = scale·σ: one local member is about σ long."
    return table("Stage-2 proposals", header, rows, note)


def t_steps(runs: list[Run]) -> str:
    """Selection score of proposals by step factor g and round."""
    groups: dict[tuple, list[float]] = {}
    for run in runs:
        for rec in run.stage2:
            k = rec.get("metrics", {}).get("stage2/round")
            for p in detail(rec, "stage2/proposal_scores"):
                if p.get("selection_score") is not None:
                    groups.setdefault((k, p.get("step")), []).append(p["selection_score"])
    rows = []
    for (k, g), scores in sorted(groups.items(), key=lambda kv: (kv[0][0] is None, kv[0])):
        s = np.asarray(scores)
        rows.append([k, g, len(s), float(s.mean()), float(np.median(s)), int(np.sum(s > 0)), int(np.sum(s < 0))])
    header = ["k", "g", "proposals", "mean sel score", "median", "> 0", "< 0"]
    return table("Proposals by step factor g", header, rows)


def t_summary(runs: list[Run]) -> str:
    recs = [rec for run in runs for rec in run.stage2]
    first = [run.stage2[0] for run in runs if run.stage2]

    def count(records, pred):
        return sum(1 for rec in records if pred(rec.get("metrics", {})))

    rows = [
        ["CoRP runs", len(runs)],
        ["stage-2 rounds", len(recs)],
        ["passed the gate", count(recs, lambda m: m.get("stage2/gated") == 1)],
        ["accepted", count(recs, lambda m: m.get("stage2/accepted") == 1)],
        ["first rounds", len(first)],
        ["first rounds with no positive member", count(first, lambda m: m.get("stage2/positive") == 0)],
        ["rounds with no positive member", count(recs, lambda m: m.get("stage2/positive") == 0)],
        ["rounds where every member scored 0 (no member changed an answer)",
         count(recs, lambda m: m.get("stage2/member_score_max") == 0 and m.get("stage2/member_score_mean") == 0)],
        ["rounds whose picked proposal has sel score <= 0", count(recs, lambda m: _le(m.get("stage2/selection_score"), 0))],
        ["rounds with gate score > 0", count(recs, lambda m: _le(0, m.get("stage2/gate_score"), strict=True))],
        ["rounds with gate LCB exactly 0 (gate unchanged, or 1 fix and 0 regressions)", count(recs, lambda m: m.get("stage2/gate_lcb") == 0)],
        ["stage 1 committed", sum(1 for r in runs if metric(r.stage1, "stage1/committed") == 1)],
    ]  # fmt: skip
    return table("Stage-2 outcome", ["count", "value"], rows)


def t_best_score(runs: list[Run]) -> str:
    """Distribution of the best member constructive score, by round index."""
    counts: dict[int, Counter] = {}
    for run in runs:
        for rec in run.stage2:
            m = rec.get("metrics", {})
            v = m.get("stage2/member_score_max")
            if v is not None:
                counts.setdefault(m.get("stage2/round"), Counter())[round(v, 4)] += 1
    values = sorted({v for c in counts.values() for v in c})
    rounds = sorted(counts, key=lambda k: (k is None, k))
    rows = [[v, *(counts[k].get(v, 0) for k in rounds), sum(counts[k].get(v, 0) for k in rounds)] for v in values]
    header = ["best member score", *(f"k={fmt(k)}" for k in rounds), "all"]
    return table("Best constructive score of a local member", header, rows, "Rounds per value.")


def t_gate(runs: list[Run]) -> str:
    """Picked proposal: selection half against gate half, and the gate's (fixes, regressions)."""
    pairs, fr = [], Counter()
    for run in runs:
        _, n_gate = run.half_sizes
        for rec in run.stage2:
            m = rec.get("metrics", {})
            s, g = m.get("stage2/selection_score"), m.get("stage2/gate_score")
            if s is not None and g is not None:
                pairs.append((s, g))
            f, r = fixes_regressions(g, m.get("stage2/gate_mean_diff"), n_gate, run.consolidation("lambda_reg"))
            if f is not None:
                fr[(f, r, m.get("stage2/gated") == 1)] += 1
    out = []
    if pairs:
        s, g = np.asarray(pairs).T
        rows = [
            ["rounds", len(s)],
            ["mean sel score", float(s.mean())],
            ["mean gate score", float(g.mean())],
            ["mean sel − gate", float((s - g).mean())],
            ["sel > gate", int(np.sum(s > g))],
            ["sel = gate", int(np.sum(s == g))],
            ["sel < gate", int(np.sum(s < g))],
            ["sel > 0", int(np.sum(s > 0))],
            ["gate > 0 among sel > 0", int(np.sum((s > 0) & (g > 0)))],
            ["sel <= 0", int(np.sum(s <= 0))],
            ["gate > 0 among sel <= 0", int(np.sum((s <= 0) & (g > 0)))],
        ]
        out.append(table("Picked proposal: selection half against gate half", ["", "value"], rows))
    if fr:
        rows = [
            [f, r, f - 2 * r, lcb_passes(f, r, 1.0), passed, c]
            for (f, r, passed), c in sorted(fr.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        header = ["gate fixes", "gate regressions", "f − 2r", "LCB > 0 at z = 1", "gated", "rounds"]
        note = (
            "At z = 1 the paired LCB is > 0 exactly when (f − r)² > f + r, whatever n "
            "(see ``lcb_passes``): one fix and no regression gives LCB = 0 and fails; two fixes pass."
        )
        out.append(table("Gate half of the picked proposal", header, rows, note))
    return "\n".join(out)


def t_sigma(runs: list[Run]) -> str:
    """Local sigma and proposal lengths here against the published rules."""
    rows = []
    for run in runs:
        sb = best_sigma(run.stage1)
        lam0 = run.consolidation("lambda_init", 0.5)
        step1 = metric(run.stage1, "stage1/step_norm")
        sig = [metric(rec, "stage2/sigma") for rec in run.stage2]
        eta = [metric(rec, "stage2/eta") for rec in run.stage2]
        pub = None if sb is None else sb * math.sqrt(lam0)
        ours0 = sig[0] if sig else None
        prop = [None if None in (s, e) else s * e for s, e in zip(sig, eta)]  # proposal length at g = 1
        rows.append(
            [
                run.label,
                step1,
                sb,
                pub,
                ours0,
                None if None in (ours0, pub) else ours0 / pub,
                sig[1] if len(sig) > 1 else None,
                prop[0] if prop else None,
                prop[1] if len(prop) > 1 else None,
                step1,
            ]
        )
    header = [
        "run", "stage-1 step", "σ_best", "published member ≈ σ_best·√λ₀", "ours σ k=0", "ratio", "ours σ k=1",
        "ours g=1 step k=0", "ours g=1 step k=1", "published g=1 step (every k)",
    ]  # fmt: skip
    note = (
        "σ_best: the stage-0 σ with the best mean reward (published initial σ, corp.py run_sampling). Published "
        "members are σ·√λ isotropic plus a low-rank part scaled by raw eigenvalues (~σ², negligible). A "
        "g = 1 proposal is η·σ here (member units) and the last committed step length in the published "
        "code (corp_ops.build_local_eta_grid); before any stage-2 commit that is the stage-1 step."
    )
    return table("Local σ and proposal length", header, rows, note)


def t_stage1(runs: list[Run]) -> str:
    rows = []
    scales = sorted({c.get("scale") for r in runs for c in detail(r.stage1, "stage1/candidate_scores")} - {None})
    for run in runs:
        cands = detail(run.stage1, "stage1/candidate_scores")
        accs = [c.get("probe_acc") for c in cands if c.get("probe_acc") is not None]
        top = max(accs) if accs else None
        ties = sum(1 for a in accs if a == top) if accs else None
        tied_scales = sorted({c.get("scale") for c in cands if c.get("probe_acc") == top})
        by_scale = [max((c["probe_acc"] for c in cands if c.get("scale") == s), default=None) for s in scales]
        stage1 = run.stage1

        def m(key: str, stage1: dict | None = stage1):
            return metric(stage1, key)

        rows.append(
            [
                run.label,
                m("stage1/best_q"),
                m("stage1/best_beta"),
                m("stage1/best_s"),
                m("stage1/elite_size"),
                m("stage1/ess_first_pass"),
                m("stage1/ess"),
                m("stage1/centre_probe_acc"),
                m("stage1/probe_acc"),
                ties,
                ",".join(fmt(s) for s in tied_scales) or DASH,
                bool(m("stage1/committed")) if m("stage1/committed") is not None else None,
                *by_scale,
            ]
        )
    header = [
        "run", "q", "β", "s", "elite", "ESS pass 1", "ESS", "centre probe", "best probe", "tied at best",
        "scales tied", "committed", *(f"best probe s={fmt(s)}" for s in scales),
    ]  # fmt: skip
    return table("Stage 1: chosen (q, β, s)", header, rows)


def t_stage1_counts(runs: list[Run]) -> str:
    chosen = [(metric(r.stage1, "stage1/best_q"), metric(r.stage1, "stage1/best_beta"), metric(r.stage1, "stage1/best_s"))
              for r in runs if r.stage1]  # fmt: skip
    rows = []
    for i, name in enumerate(("q", "β", "s")):
        for value, c in sorted(Counter(x[i] for x in chosen).items(), key=lambda kv: (kv[0] is None, kv[0])):
            rows.append([name, value, c])
    return table("Stage 1: how often each grid value won", ["parameter", "value", "runs"], rows)


def t_weights(runs: list[Run]) -> str:
    """First-pass weight concentration over the stage-0 elite, for this grid and the published corners."""
    per: dict[tuple, list] = {}
    ruled: dict[tuple, str] = {}
    for run in runs:
        rewards = (run.stage1 or {}).get("population", {}).get("mean_rewards")
        if not rewards:
            continue
        rewards = np.asarray(rewards, dtype=np.float64)
        qs = sorted(set(run.consolidation("quantiles", [])) | set(PUBLISHED_QUANTILES))
        betas = sorted(set(run.consolidation("betas", [])) | set(PUBLISHED_BETAS))
        local = run.consolidation("local_members")
        for q in qs:
            reasons = []
            if min_elite(len(rewards), q) < 2:
                reasons.append(f"N={len(rewards)}")
            if local and min_elite(local, q) < 2:
                reasons.append(f"local_members={local}")
            for b in betas:
                key = (len(rewards), q, b)
                per.setdefault(key, []).append(first_pass(rewards, q, b))
                if reasons:
                    ruled[key] = ", ".join(reasons)
    rows = []
    for key in sorted(per):
        n, q, b = key
        vals = np.asarray(per[key])
        rows.append([n, q, b, len(vals), vals[:, 0].mean(), vals[:, 1].mean(), (vals[:, 1] / vals[:, 0]).mean(),
                     vals[:, 2].mean(), ruled.get(key, "no")])  # fmt: skip
    header = ["N", "q", "β", "runs", "mean elite", "mean ESS pass 1", "ESS / elite", "entropy (nats)", "ruled out by"]
    note = (
        "Recomputed from the stage-0 mean rewards: elite = reward ≥ q-quantile, weights softmax(β·r). "
        "'ruled out by': the elite-of-2 check (a q that leaves < 2 of N stage-0 members or of "
        "consolidation.local_members) rejects the configuration. Pass 2 (alignment/dispersion) is logged "
        "only for the chosen merge (table stage1)."
    )
    return table("Stage-1 first-pass weights by (q, β)", header, rows, note)


def t_by_round(runs: list[Run]) -> str:
    """Local members and proposals aggregated by stage-2 round index."""
    groups: dict = {}
    for run in runs:
        for rec in run.stage2:
            m = rec.get("metrics", {})
            g = groups.setdefault(
                m.get("stage2/round"), {"rounds": 0, "members": 0, "positive": 0, "mean": [], "flat": 0}
            )
            g["rounds"] += 1
            g["members"] += rec.get("population", {}).get("size", 0) or 0
            g["positive"] += m.get("stage2/positive") or 0
            if m.get("stage2/member_score_mean") is not None:
                g["mean"].append(m["stage2/member_score_mean"])
            g["flat"] += int(m.get("stage2/member_score_max") == 0 and m.get("stage2/member_score_mean") == 0)
    rows = [
        [k, g["rounds"], g["members"], g["positive"], g["positive"] / g["members"] if g["members"] else None,
         float(np.mean(g["mean"])) if g["mean"] else None, int(np.sum(np.asarray(g["mean"]) < 0)), g["flat"]]
        for k, g in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0]))
    ]  # fmt: skip
    header = ["k", "rounds", "members", "positive", "share positive", "mean member score", "rounds mean < 0",
              "rounds all 0"]  # fmt: skip
    return table(
        "Local members by round", header, rows, "σ halves from k = 0 to k = 1 (every k = 0 round was rejected)."
    )


def t_lengths(runs: list[Run]) -> str:
    """Selection score of proposals by approximate step length (scale * sigma)."""
    edges = [0.0, 2e-3, 4e-3, 8e-3, math.inf]
    bins: dict[int, list[float]] = {}
    for run in runs:
        for rec in run.stage2:
            sigma = metric(rec, "stage2/sigma")
            for p in detail(rec, "stage2/proposal_scores"):
                if None in (sigma, p.get("scale"), p.get("selection_score")):
                    continue
                length = p["scale"] * sigma
                i = next(j for j in range(len(edges) - 1) if edges[j] <= length < edges[j + 1])
                bins.setdefault(i, []).append(p["selection_score"])
    rows = []
    for i, scores in sorted(bins.items()):
        s = np.asarray(scores)
        rows.append([f"[{fmt(edges[i])}, {fmt(edges[i + 1])})", len(s), float(s.mean()), int(np.sum(s > 0)),
                     int(np.sum(s < 0)), float(s.min())])  # fmt: skip
    header = ["≈‖step‖", "proposals", "mean sel score", "> 0", "< 0", "worst"]
    return table("Proposals by approximate length", header, rows, "≈‖step‖ = scale·σ (see table proposals).")


def direct_lcb(f: int, r: int, n: int, z: float) -> float:
    """mean - z * SE of f (+1), r (-1) and n - f - r (0) paired differences, computed as
    ``corp.consolidate.stage2.paired_lcb`` (and the published ``_paired_delta_summary``) do."""
    d = np.zeros(n)
    d[:f], d[f : f + r] = 1.0, -1.0
    return float(d.mean()) - z * float(d.std(ddof=1)) / math.sqrt(n)


def t_lcb(runs: list[Run]) -> str:
    """The z = 1 rule (f - r)^2 > f + r against the direct bound, and the cases rounding decides."""
    rows = []
    for n in (16, 32, 100, 250):
        checked = mismatches = 0
        boundary = []
        for f in range(n + 1):
            for r in range(n + 1 - f):
                lcb = direct_lcb(f, r, n, 1.0)
                checked += 1
                if (f - r) ** 2 == f + r and f > r:
                    boundary.append((f, r, lcb))
                elif (lcb > 0) != lcb_passes(f, r, 1.0):
                    mismatches += 1
        flips = [f"{f}/{r}: {lcb:+.1e}" for f, r, lcb in boundary if lcb > 0]
        rows.append([n, checked, mismatches, len(boundary), "; ".join(flips) or "none"])
    header = [
        "n",
        "(f, r) checked",
        "rule ≠ direct",
        "boundary cases: (f − r)² = f + r, LCB 0 in exact arithmetic",
        "boundary cases passing by rounding",
    ]
    note = (
        f"z = 1. Off the boundary the rule and the direct bound agree. For comparison, 1 fix and 0 regressions "
        f"at n = 16 gives LCB {fmt(direct_lcb(1, 0, 16, 0.5))} at z = 0.5."
    )
    return table("Gate rule at z = 1", header, rows, note)


TABLES = {
    "summary": t_summary,
    "rounds": t_rounds,
    "best_score": t_best_score,
    "gate": t_gate,
    "lcb": t_lcb,
    "by_round": t_by_round,
    "steps": t_steps,
    "lengths": t_lengths,
    "sigma": t_sigma,
    "stage1": t_stage1,
    "stage1_counts": t_stage1_counts,
    "weights": t_weights,
    "proposals": t_proposals,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, default=[RESULTS], help="searched for rounds.jsonl")
    parser.add_argument("--table", nargs="+", default=list(TABLES), metavar="NAME", help=f"any of {', '.join(TABLES)}")
    args = parser.parse_args(argv)
    bad = [t for t in args.table if t not in TABLES]
    if bad:
        parser.error(f"--table {bad[0]!r}: allowed are {', '.join(TABLES)}")
    runs, skipped = load_runs(args.folders)
    print(f"{len(runs)} CoRP runs, {skipped} other runs skipped, from {', '.join(map(str, args.folders))}\n")
    for name in args.table:
        print(TABLES[name](runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
