"""The one place a CoRP round's record becomes its metrics (scalars) and details (tables).

Metric and table names are written here only. The names something else reads back (the
run's plots in ``corp/report/run_plots.py``) are the constants of ``Stage1Keys``,
``Stage2Keys`` and ``CENTRE_PROBE_ACC``, and table rows the plots read are the dataclasses
``EliteRow`` and ``SpectrumRow``; the other names appear once, in the functions below.
The names are those of every rounds.jsonl and W&B run so far: renaming one orphans old runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from corp.consolidate.records import Stage1Record, Stage2Record
from corp.consolidate.stage1 import Merge, cloud_spectrum, cloud_stats
from corp.consolidate.stage2 import ess

CENTRE_PROBE_ACC = "corp/centre_probe_acc"  # the centre's probe accuracy after the round, where known


class Stage1Keys:
    """Names of stage 1's metrics and tables that the plots read."""

    BEST_Q = "stage1/best_q"
    BEST_BETA = "stage1/best_beta"
    ESS = "stage1/ess"
    PROBE_ACC = "stage1/probe_acc"
    CENTRE_PROBE_ACC = "stage1/centre_probe_acc"
    COMMITTED = "stage1/committed"
    EFF_RANK = "stage1/eff_rank"
    KAPPA = "stage1/kappa"
    ELITE_MEMBERS = "stage1/elite_members"  # rows: EliteRow
    SPECTRUM = "stage1/elite_spectrum"  # rows: SpectrumRow


class Stage2Keys:
    """Names of stage 2's metrics and tables that the plots read."""

    ROUND = "stage2/round"
    GATED = "stage2/gated"
    ACCEPTED = "stage2/accepted"
    PROBE_ACC = "stage2/probe_acc"
    EFF_RANK = "stage2/eff_rank"
    KAPPA = "stage2/kappa"
    SPECTRUM = "stage2/cloud_spectrum"  # rows: SpectrumRow


class _TableRow:
    """A row of a details table, read back from rounds.jsonl by its field names."""

    @classmethod
    def read(cls, row: dict[str, Any]):
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class EliteRow(_TableRow):
    """One elite member of a merge: its score and the two passes' weights."""

    member: int
    score: float
    sigma: float
    first_pass_weight: float
    weight: float
    alignment: float
    dispersion: float


@dataclass(frozen=True)
class SpectrumRow(_TableRow):
    """One eigenvalue of a cloud or search distribution: 1-based component, value, share of the total."""

    component: int
    eigenvalue: float
    share: float


def stage1_observations(rec: Stage1Record) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, details) of a stage-1 round."""
    cand, res, m = rec.chosen, rec.probe[rec.best], rec.chosen.merge
    metrics: dict[str, Any] = {
        "stage1/population_reward_mean": float(rec.rewards.mean()),
        "stage1/population_reward_max": float(rec.rewards.max()),
        "stage1/candidates": len(rec.candidates),
        "stage1/duplicates": rec.duplicates,
        Stage1Keys.BEST_Q: m.q,
        Stage1Keys.BEST_BETA: m.beta,
        "stage1/best_s": cand.scale,
        "stage1/elite_size": len(m.elite),
        Stage1Keys.ESS: m.ess,
        "stage1/ess_first_pass": ess(m.first_pass),
        "stage1/alignment_mean": float(m.alignment.mean()),
        "stage1/alignment_std": float(m.alignment.std()),
        "stage1/alignment_min": float(m.alignment.min()),
        "stage1/alignment_max": float(m.alignment.max()),
        "stage1/dispersion_rel_mean": m.relative_dispersion,
        "stage1/step_norm": cand.direction.norm(),
        "stage1/step_over_member_norm": cand.direction.norm() / m.member_norm if m.member_norm > 0 else 0.0,
        Stage1Keys.PROBE_ACC: res.accuracy,
        "stage1/probe_reward": res.mean_reward,
        Stage1Keys.CENTRE_PROBE_ACC: rec.centre.accuracy,
        "stage1/centre_probe_reward": rec.centre.mean_reward,
        Stage1Keys.COMMITTED: int(rec.committed),
        "stage1/evaluate_calls": rec.evaluate_calls,
    }
    metrics.update(_centre(rec.centre_probe_acc))
    cloud, spectrum = _cloud(Stage1Keys, rec.elite_cloud, m.weights)
    metrics.update(cloud)
    details = {
        "stage1/candidate_scores": [
            {
                "q": c.merge.q,
                "beta": c.merge.beta,
                "scale": c.scale,
                "probe_acc": r.accuracy,
                "probe_reward": r.mean_reward,
                "step_norm": c.direction.norm(),
                "best": i == rec.best,
            }
            for i, (c, r) in enumerate(zip(rec.candidates, rec.probe, strict=True))
        ],
        Stage1Keys.ELITE_MEMBERS: elite_rows(m, rec.rewards, rec.sigmas),
        Stage1Keys.SPECTRUM: spectrum,
        "stage1/search_eigenvalues": spectrum_rows(rec.search_eigenvalues),
    }
    return metrics, details


def stage2_observations(rec: Stage2Record) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, details) of a stage-2 round."""
    sel, prop = rec.selection, rec.chosen
    scores = rec.member_scores
    metrics: dict[str, Any] = {
        Stage2Keys.ROUND: rec.round,
        "stage2/sigma": rec.sigma,
        "stage2/lambda": rec.lam,
        "stage2/eta": rec.eta,
        "stage2/member_score_mean": float(scores.mean()),
        "stage2/member_score_max": float(scores.max()),
        "stage2/share_positive": float(np.mean(scores > 0)),
        "stage2/proposals": len(rec.proposals),
        "stage2/duplicates": rec.duplicates,
        "stage2/best_q": prop.merge.q,
        "stage2/best_beta": prop.merge.beta,
        "stage2/best_step": prop.grid,
        "stage2/selection_score": sel.scores[sel.best],
        "stage2/elite_size": len(prop.merge.elite),
        "stage2/merge_ess": prop.merge.ess,
        "stage2/alignment_mean": float(prop.merge.alignment.mean()),
        "stage2/dispersion_rel_mean": prop.merge.relative_dispersion,
        Stage2Keys.GATED: int(sel.gated or rec.pooled is not None),  # pooled_sign: every round reaches the probe
    }
    if not math.isnan(sel.gate_score):  # NaN: stage2_test=pooled_sign scores the gate half after the line search
        metrics["stage2/gate_score"] = sel.gate_score
        metrics["stage2/gate_mean_diff"] = sel.gate_mean
    if math.isfinite(sel.gate_lcb):
        metrics["stage2/gate_lcb"] = sel.gate_lcb
    if rec.pooled is not None:
        pooled = rec.pooled
        metrics.update({"stage2/pooled_fixes": pooled.fixes, "stage2/pooled_regressions": pooled.regressions,
                        "stage2/pooled_score": pooled.score, "stage2/pooled_p": pooled.p_value})  # fmt: skip
    details: dict[str, Any] = {
        "stage2/proposal_scores": [
            {
                "q": p.merge.q,
                "beta": p.merge.beta,
                "step": p.grid,
                "scale": p.scale,
                "selection_score": sel.scores[i],
                "selection_reward_gain": sel.reward_gains[i],
                "best": i == sel.best,
                **({} if sel.gate_scores is None else {"gate_score": sel.gate_scores[i], "gate_lcb": sel.gate_lcbs[i]}),
            }
            for i, p in enumerate(rec.proposals)
        ],
        "stage2/elite_members": elite_rows(prop.merge, scores, rec.sigmas),
    }
    ls = rec.line_search
    if ls is None:
        metrics[Stage2Keys.ACCEPTED] = 0
    else:
        details["stage2/line_search"] = [
            {"alpha": a, "probe_acc": r.accuracy, "probe_reward": r.mean_reward, "probe_lcb": b, "picked": i == ls.pick}
            for i, (a, r, b) in enumerate(zip(ls.alphas, ls.probe, ls.bounds, strict=True))
        ]
        metrics["stage2/alpha"] = ls.alphas[ls.pick]
        metrics[Stage2Keys.PROBE_ACC] = ls.probe[ls.pick].accuracy
        metrics["stage2/centre_probe_acc"] = ls.centre.accuracy
        metrics[Stage2Keys.ACCEPTED] = int(ls.accepted)
        if math.isfinite(ls.bounds[ls.pick]):
            metrics["stage2/probe_lcb"] = ls.bounds[ls.pick]

    refit = rec.refit
    metrics["stage2/ess_target"] = refit.ess_target
    metrics["stage2/positive"] = len(refit.positive)
    if refit.weights is not None and refit.cloud is not None:
        metrics["stage2/ess"] = ess(refit.weights)
        if math.isfinite(refit.inv_temperature):
            metrics["stage2/inv_temperature"] = refit.inv_temperature
        if len(refit.eigenvalues):
            p = refit.eigenvalues[refit.eigenvalues > 0]
            metrics["stage2/search_eff_rank"] = float(np.exp(-np.sum(p * np.log(p))))
        cloud, spectrum = _cloud(Stage2Keys, refit.cloud, refit.weights)
        metrics.update(cloud)
        details[Stage2Keys.SPECTRUM] = spectrum
        details["stage2/cloud_weights"] = [float(w) for w in refit.weights]
        details["stage2/search_eigenvalues"] = spectrum_rows(refit.eigenvalues)
    metrics["stage2/accepted_total"] = rec.accepted_total
    metrics["stage2/consecutive_rejections"] = rec.consecutive_rejections
    metrics["stage2/evaluate_calls"] = rec.evaluate_calls
    metrics.update(_centre(rec.centre_probe_acc))
    return metrics, details


def _centre(acc: float | None) -> dict[str, float]:
    return {} if acc is None else {CENTRE_PROBE_ACC: acc}


def _cloud(keys: type[Stage1Keys] | type[Stage2Keys], matrix: np.ndarray, weights: np.ndarray) -> tuple[dict, list]:
    """(effective rank and kappa as metrics, the eigen-spectrum as rows) of a weighted cloud, one SVD."""
    if len(matrix) <= 1:
        return {}, []
    eig = cloud_spectrum(matrix, weights)
    stats = cloud_stats(matrix, weights, eig)
    if stats is None:
        return {}, []
    return {keys.EFF_RANK: stats[0], keys.KAPPA: stats[1]}, spectrum_rows(eig)


def spectrum_rows(eigenvalues: np.ndarray) -> list[dict[str, float]]:
    """Eigenvalues as ``SpectrumRow`` table rows."""
    total = float(np.sum(eigenvalues))
    return [
        asdict(SpectrumRow(i + 1, float(e), float(e) / total if total > 0 else 0.0)) for i, e in enumerate(eigenvalues)
    ]


def elite_rows(m: Merge, scores: np.ndarray, sigmas: np.ndarray) -> list[dict[str, float]]:
    """One ``EliteRow`` per elite member of a merge."""
    return [
        asdict(EliteRow(int(i), float(scores[i]), float(sigmas[i]), float(w1), float(w2), float(a), float(d)))
        for i, w1, w2, a, d in zip(m.elite, m.first_pass, m.weights, m.alignment, m.dispersion, strict=True)
    ]
