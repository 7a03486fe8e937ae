"""CoRP: consolidate one rewarded population into one model, then refine it in gated rounds.

Round 0 proposes N isotropic members (stage 0) and collapses their scores into a single
step (stage 1, ``stage1.merge``). Rounds >= 1 draw local members around the centre from
a low-rank plus isotropic search distribution, merge them, and commit a merged step
only if it survives a held-out gate and a probe line search (stage 2). See docs/method.md
§4; where this code differs from the published code (§7), the choice is documented where it is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from corp.consolidate.base import (
    ConsolidationConfig,
    Evaluate,
    Operator,
    Population,
    PopulationScores,
    Scores,
    Update,
    isotropic_population,
)
from corp.consolidate.checks import at_least as _at_least
from corp.consolidate.checks import choice as _choice
from corp.consolidate.checks import fail as _fail
from corp.consolidate.stage1 import Merge, cloud_spectrum, cloud_stats, merge, min_elite_size, step_unit
from corp.consolidate.stage2 import (
    constructive_scores,
    ess,
    ess_target,
    ess_weights,
    fit_cloud,
    local_population,
    next_lambda,
    paired_lcb,
    split_support,
)
from corp.perturb.direction import Direction, stack

SIGMA_DECAY = 0.5  # a rejected stage-2 round halves sigma


@dataclass
class CorpConfig(ConsolidationConfig):
    """Hyper-parameters of CoRP (group ``consolidation``). Defaults: ``consolidation=corp``, sized for a
    2-core CPU run of a ~135M model (budget in ``conf/consolidation/corp.yaml``); the published grids and
    budgets are ``consolidation=corp_paper``. Population size and sigmas come from the ``perturbation``
    group; the elite-size checks that need them (and ``local_members``) run in ``CorpOperator``."""

    name: str = "corp"  # operator registry key
    # Stage 1 grid. q: elite = members with reward >= q-quantile. beta: softmax inverse temperature
    # on mean rewards in [0, 1]. scales: candidate step lengths s (unit: see scale_unit).
    # Top half / top third: both leave an elite of >= 2 even at population 4.
    quantiles: list[float] = field(default_factory=lambda: [0.5, 0.66])
    betas: list[float] = field(default_factory=lambda: [2.0, 20.0])
    scales: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0])
    # "member": a candidate s*d has the length of s elite members (d is renormalised);
    # "raw": s multiplies d = sum w_i a_i directly (published; ||d|| shrinks as weights spread).
    scale_unit: str = "member"
    # "if_no_worse": commit stage 1 only if its probe accuracy >= the centre's;
    # "always": commit the best candidate whatever it scores (published code).
    stage1_commit: str = "if_no_worse"
    stage2_rounds: int = 2  # gated rounds after stage 1; 0 disables stage 2
    local_members: int = 8  # members per stage-2 round, scored on the selection half (>= 8: q = 0.75 keeps 2)
    max_accepted: int = 2  # stop after this many accepted stage-2 rounds
    max_consecutive_rejections: int = 2  # ... or this many rejections in a row
    rank: int = 8  # r: principal directions of the search distribution
    lambda_init: float = 0.5  # isotropic share of the search covariance at the first round
    lambda_reg: float = 2.0  # constructive score = (fixes - lambda_reg * regressions) / n
    gate_z: float = 1.0  # lower confidence bound = mean - gate_z * SE of the paired difference
    step_grid: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # proposals at eta * g
    line_search: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # probe alpha grid
    ess_start: float = 4.0  # target effective sample size of the refit, first round ...
    ess_end: float = 2.0  # ... shrinking linearly to this at the last round
    split_seed: int = 0  # seed of the selection/gate split of the support set

    def __post_init__(self) -> None:
        for key in ("quantiles", "betas", "scales", "step_grid", "line_search"):
            values = getattr(self, key)
            if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or not len(values):
                _fail(key, values, "must be a non-empty list of numbers")
            try:
                setattr(self, key, [float(v) for v in values])
            except (TypeError, ValueError):
                _fail(key, values, "must be a non-empty list of numbers")
            if not all(math.isfinite(v) for v in getattr(self, key)):
                _fail(key, values, "every value must be finite")
        if not all(0.0 < q < 1.0 for q in self.quantiles):
            _fail("quantiles", self.quantiles, "every q must be in (0, 1)")
        if not all(b >= 0.0 for b in self.betas):
            _fail("betas", self.betas, "every beta must be >= 0")
        for key in ("scales", "step_grid", "line_search"):
            if not all(v > 0.0 for v in getattr(self, key)):
                _fail(key, getattr(self, key), "every value must be > 0")
        _choice("scale_unit", self.scale_unit, ("member", "raw"))
        _choice("stage1_commit", self.stage1_commit, ("if_no_worse", "always"))
        _at_least("stage2_rounds", self.stage2_rounds, 0)
        _at_least("local_members", self.local_members, 2)
        _at_least("max_accepted", self.max_accepted, 1)
        _at_least("max_consecutive_rejections", self.max_consecutive_rejections, 1)
        _at_least("rank", self.rank, 1)
        _at_least("split_seed", self.split_seed, 0)
        if not 0.0 <= self.lambda_init <= 1.0:
            _fail("lambda_init", self.lambda_init, "must be in [0, 1]")
        for key in ("lambda_reg", "gate_z"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) >= 0.0):
                _fail(key, getattr(self, key), "must be a finite number >= 0")
        for key in ("ess_start", "ess_end"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) >= 1.0):
                _fail(key, getattr(self, key), "must be >= 1 (an effective number of members)")


def _members_needed(quantiles: list[float]) -> int:
    n = 2
    while any(min_elite_size(n, q) < 2 for q in quantiles):
        n += 1
    return n


@dataclass(frozen=True)
class _Candidate:
    direction: Direction
    merge: Merge
    scale: float  # s (stage 1) or eta * g (stage 2), in the scale_unit
    grid: float  # s (stage 1) or g (stage 2): the grid value that produced it


class _Counted:
    """An evaluate callback that counts its calls (each call decodes a split once).

    ``prefetch`` passes a hint on to the callback when it takes one (the loop forwards it
    to ``ParameterSpace.prefetch``): the directions about to be evaluated, or (``basis``)
    the principal directions the next local members are built from. Hints change how
    much noise is regenerated, never a score, so a callback without them is fine.
    """

    def __init__(self, evaluate: Evaluate) -> None:
        self.evaluate, self.calls = evaluate, 0
        self._hint = getattr(evaluate, "prefetch", None)

    def __call__(self, direction: Direction, split: str, indices: np.ndarray | None = None) -> Scores:
        self.calls += 1
        return self.evaluate(direction, split, indices)

    def prefetch(self, directions: list[Direction], basis: bool = False) -> None:
        if self._hint is not None:
            self._hint(directions, basis=basis)


class CorpOperator(Operator):
    """CoRP stage 0 + 1 in round 0, gated stage-2 rounds after it.

    Evaluate calls are kept to what the method needs: the centre's probe and support
    scores are cached until the centre moves; after a commit the committed candidate's
    probe scores become the new centre's (they are the same model); duplicate candidates
    (identical directions from different grid points) are scored once.

    Stage-1 commit rule: with ``stage1_commit="if_no_worse"`` (default) the best candidate is
    committed only if its probe accuracy >= the centre's, so stage 1 never knowingly hurts;
    the published code always commits (``"always"``). Either way stage 2 starts from the
    best candidate's elite cloud.
    """

    name = "corp"

    def __init__(self, cfg: CorpConfig, population_size: int, sigmas: list[float], seed: int, support_size: int):
        if population_size < 2:
            raise ValueError(f"perturbation.population_size={population_size}: CoRP needs at least 2 members")
        small = [q for q in cfg.quantiles if min_elite_size(population_size, q) < 2]
        if small:
            raise ValueError(
                f"perturbation.population_size={population_size} is too small for consolidation.quantiles="
                f"{cfg.quantiles}: q={small[0]} keeps {min_elite_size(population_size, small[0])} member(s), the "
                f"elite needs at least 2 (use at least {_members_needed(cfg.quantiles)} members or lower quantiles)"
            )
        if cfg.stage2_rounds > 0:
            small = [q for q in cfg.quantiles if min_elite_size(cfg.local_members, q) < 2]
            if small:
                _fail(
                    "local_members",
                    cfg.local_members,
                    f"too few for consolidation.quantiles={cfg.quantiles}: q={small[0]} keeps "
                    f"{min_elite_size(cfg.local_members, small[0])} member(s), the elite needs at least 2 "
                    f"(use at least {_members_needed(cfg.quantiles)} local members, lower quantiles, "
                    "or consolidation.stage2_rounds=0)",
                )
        if not len(sigmas) or not all(float(s) > 0 for s in sigmas):
            raise ValueError(f"perturbation.sigmas={list(sigmas)}: need at least one sigma, all > 0")
        if cfg.stage2_rounds > 0 and support_size < 4:
            raise ValueError(
                f"task.support_size={support_size}: CoRP stage 2 (consolidation.stage2_rounds="
                f"{cfg.stage2_rounds}) splits the support into selection and gate halves of >= 2 examples"
            )
        self.cfg = cfg
        self.population_size = int(population_size)
        self.sigmas = [float(s) for s in sigmas]
        self.seed = int(seed)
        self.selection, self.gate = split_support(support_size, cfg.split_seed)
        self.stage = "stage1"  # -> "stage2" -> "done"
        self.stage2_round = 0  # stage-2 rounds run so far
        self.sigma = 0.0  # stage-2 member scale (absolute, coefficient units)
        self.lam = cfg.lambda_init
        self.eta = 1.0  # current step length in scale_unit
        self.accepted = 0
        self.rejections = 0  # consecutive
        self.components: list[Direction] = []
        self.eigenvalues = np.zeros(0)
        self.centre_probe: Scores | None = None
        self.centre_support: Scores | None = None

    # -- the loop's interface ---------------------------------------------------------------
    def propose(self, round_idx: int) -> Population | None:
        if self.stage == "stage1":
            return isotropic_population(self.seed, round_idx, self.population_size, self.sigmas)
        if self.stage == "stage2":
            return local_population(
                self.seed,
                round_idx,
                self.cfg.local_members,
                self.sigma,
                self.lam,
                self.components,
                self.eigenvalues,
                self.selection,
            )
        return None

    def update(
        self, round_idx: int, population: Population | None, scores: PopulationScores | None, evaluate: Evaluate
    ) -> Update:
        if self.stage == "done":
            return Update(None, {}, done=True)
        if population is None or scores is None:
            raise ValueError(f"CoRP round {round_idx} needs the scored population it proposed")
        if scores.rewards.shape[0] != len(population):
            raise ValueError(f"{scores.rewards.shape[0]} score rows for {len(population)} members")
        counted = _Counted(evaluate)
        if self.stage == "stage1":
            return self._stage1(population, scores, counted)
        return self._stage2(population, scores, counted)

    # -- stage 1 ----------------------------------------------------------------------------
    def _stage1(self, population: Population, scores: PopulationScores, evaluate: _Counted) -> Update:
        cfg = self.cfg
        rewards = scores.mean_rewards.astype(np.float64)
        matrix, basis = stack(population.members)
        candidates, duplicates = self._candidates(matrix, basis, rewards, 1.0, cfg.scales)
        evaluate.prefetch([c.direction for c in candidates])  # all (q, beta) merges share the elite's seeds
        centre = self._centre_probe(evaluate)
        results = [evaluate(c.direction, "probe") for c in candidates]
        best = _best(candidates, results)
        cand, res = candidates[best], results[best]
        commit = cfg.stage1_commit == "always" or res.accuracy >= centre.accuracy

        m = cand.merge
        elite = [population.members[i] for i in m.elite]
        self.components, self.eigenvalues = fit_cloud(elite, m.weights, cfg.rank)
        self.sigma = m.member_norm
        self.eta = cand.scale
        step = cand.direction if commit else None
        if commit:
            self._moved(res)
        self.stage = "stage2" if cfg.stage2_rounds > 0 else "done"
        if self.stage == "stage2":
            evaluate.prefetch(self.components, basis=True)  # every local member of the next round uses them

        metrics: dict[str, Any] = {
            "stage1/population_reward_mean": float(rewards.mean()),
            "stage1/population_reward_max": float(rewards.max()),
            "stage1/candidates": len(candidates),
            "stage1/duplicates": duplicates,
            "stage1/best_q": m.q,
            "stage1/best_beta": m.beta,
            "stage1/best_s": cand.scale,
            "stage1/elite_size": len(m.elite),
            "stage1/ess": m.ess,
            "stage1/ess_first_pass": ess(m.first_pass),
            "stage1/alignment_mean": float(m.alignment.mean()),
            "stage1/alignment_std": float(m.alignment.std()),
            "stage1/alignment_min": float(m.alignment.min()),
            "stage1/alignment_max": float(m.alignment.max()),
            "stage1/dispersion_rel_mean": m.relative_dispersion,
            "stage1/step_norm": cand.direction.norm(),
            "stage1/step_over_member_norm": cand.direction.norm() / m.member_norm if m.member_norm > 0 else 0.0,
            "stage1/probe_acc": res.accuracy,
            "stage1/probe_reward": res.mean_reward,
            "stage1/centre_probe_acc": centre.accuracy,
            "stage1/centre_probe_reward": centre.mean_reward,
            "stage1/committed": int(commit),
            "stage1/evaluate_calls": evaluate.calls,
        }
        metrics.update(self._centre_metrics())
        cloud_metrics, spectrum = _cloud_observations("stage1", matrix[m.elite], m.weights)
        metrics.update(cloud_metrics)
        details = {
            "stage1/candidate_scores": [
                {
                    "q": c.merge.q,
                    "beta": c.merge.beta,
                    "scale": c.scale,
                    "probe_acc": r.accuracy,
                    "probe_reward": r.mean_reward,
                    "step_norm": c.direction.norm(),
                    "best": i == best,
                }
                for i, (c, r) in enumerate(zip(candidates, results, strict=True))
            ],
            "stage1/elite_members": _elite_rows(m, rewards, population.sigmas),
            "stage1/elite_spectrum": spectrum,
            "stage1/search_eigenvalues": _spectrum_rows(self.eigenvalues),
        }
        return Update(step, metrics, done=self.stage == "done", details=details)

    def _candidates(
        self, matrix: np.ndarray, basis: np.ndarray, scores: np.ndarray, eta: float, grid: list[float]
    ) -> tuple[list[_Candidate], int]:
        """Merged directions for every (q, beta, grid value), in grid order, duplicates dropped."""
        candidates: list[_Candidate] = []
        seen: set[Direction] = set()
        duplicates = 0
        for q in self.cfg.quantiles:
            for beta in self.cfg.betas:
                m = merge(matrix, basis, scores, q, beta)
                unit = step_unit(m, self.cfg.scale_unit)
                if unit is None:
                    continue
                for g in grid:
                    direction = m.direction * (eta * g * unit)
                    if direction in seen:
                        duplicates += 1
                        continue
                    seen.add(direction)
                    candidates.append(_Candidate(direction, m, eta * g, g))
        if not candidates:
            raise RuntimeError("every merged direction vanished: the population has no usable members")
        return candidates, duplicates

    # -- stage 2 ----------------------------------------------------------------------------
    def _stage2(self, population: Population, scores: PopulationScores, evaluate: _Counted) -> Update:
        """One gated round: score members, merge, pick on selection, gate, line-search on probe."""
        cfg = self.cfg
        if scores.correct.shape[1] != len(self.selection):
            raise ValueError(f"stage-2 members must be scored on the {len(self.selection)} selection examples")
        k = self.stage2_round
        sigma, lam, eta = self.sigma, self.lam, self.eta
        support = self._centre_support(evaluate)
        c_sel, c_gate = support.correct[self.selection], support.correct[self.gate]
        member_scores = constructive_scores(c_sel, scores.correct, cfg.lambda_reg)

        matrix, basis = stack(population.members)
        proposals, duplicates = self._candidates(matrix, basis, member_scores, eta, cfg.step_grid)
        evaluate.prefetch([p.direction for p in proposals])
        sel = [evaluate(p.direction, "support", self.selection) for p in proposals]
        sel_scores = [float(constructive_scores(c_sel, s.correct, cfg.lambda_reg)) for s in sel]
        r_sel = support.rewards[self.selection]
        best = min(
            range(len(proposals)),
            key=lambda i: (-sel_scores[i], -float(np.mean(sel[i].rewards - r_sel)), proposals[i].direction.norm(), i),
        )
        prop = proposals[best]
        gate = evaluate(prop.direction, "support", self.gate)
        gate_score = float(constructive_scores(c_gate, gate.correct, cfg.lambda_reg))
        gate_mean, gate_lcb = paired_lcb(c_gate, gate.correct, cfg.gate_z)
        gated = gate_score > 0 and gate_lcb > 0

        metrics: dict[str, Any] = {
            "stage2/round": k,
            "stage2/sigma": sigma,
            "stage2/lambda": lam,
            "stage2/eta": eta,
            "stage2/member_score_mean": float(member_scores.mean()),
            "stage2/member_score_max": float(member_scores.max()),
            "stage2/share_positive": float(np.mean(member_scores > 0)),
            "stage2/proposals": len(proposals),
            "stage2/duplicates": duplicates,
            "stage2/best_q": prop.merge.q,
            "stage2/best_beta": prop.merge.beta,
            "stage2/best_step": prop.grid,
            "stage2/selection_score": sel_scores[best],
            "stage2/elite_size": len(prop.merge.elite),
            "stage2/merge_ess": prop.merge.ess,
            "stage2/alignment_mean": float(prop.merge.alignment.mean()),
            "stage2/dispersion_rel_mean": prop.merge.relative_dispersion,
            "stage2/gate_score": gate_score,
            "stage2/gate_mean_diff": gate_mean,
            "stage2/gated": int(gated),
        }
        if math.isfinite(gate_lcb):
            metrics["stage2/gate_lcb"] = gate_lcb
        details: dict[str, Any] = {
            "stage2/proposal_scores": [
                {
                    "q": p.merge.q,
                    "beta": p.merge.beta,
                    "step": p.grid,
                    "scale": p.scale,
                    "selection_score": sel_scores[i],
                    "selection_reward_gain": float(np.mean(sel[i].rewards - r_sel)),
                    "best": i == best,
                }
                for i, p in enumerate(proposals)
            ],
            "stage2/elite_members": _elite_rows(prop.merge, member_scores, population.sigmas),
        }

        step = None
        if gated:
            centre = self._centre_probe(evaluate)
            tries = [(alpha, evaluate(prop.direction * alpha, "probe")) for alpha in cfg.line_search]
            bounds = [paired_lcb(centre.correct, res.correct, cfg.gate_z)[1] for _, res in tries]
            pick = min(
                range(len(tries)),
                key=lambda i: (-tries[i][1].accuracy, -bounds[i], abs(math.log(tries[i][0])), tries[i][0]),
            )
            alpha, res = tries[pick]
            accept = bounds[pick] > 0 and res.accuracy >= centre.accuracy
            details["stage2/line_search"] = [
                {
                    "alpha": a,
                    "probe_acc": r.accuracy,
                    "probe_reward": r.mean_reward,
                    "probe_lcb": b,
                    "picked": i == pick,
                }
                for i, ((a, r), b) in enumerate(zip(tries, bounds, strict=True))
            ]
            metrics.update(
                {
                    "stage2/alpha": alpha,
                    "stage2/probe_acc": res.accuracy,
                    "stage2/centre_probe_acc": centre.accuracy,
                    "stage2/accepted": int(accept),
                }
            )
            if math.isfinite(bounds[pick]):
                metrics["stage2/probe_lcb"] = bounds[pick]
            if accept:
                step = prop.direction * alpha
                self.eta = prop.scale * alpha
                self._moved(res)
        else:
            metrics["stage2/accepted"] = 0

        if step is not None:
            self.accepted += 1
            self.rejections = 0
        else:
            self.sigma *= SIGMA_DECAY
            self.rejections += 1
        metrics.update(self._refit(population, member_scores, k, details))
        self.lam = next_lambda(lam, float(np.mean(member_scores > 0)))
        self.stage2_round += 1
        if (
            self.accepted >= cfg.max_accepted
            or self.rejections >= cfg.max_consecutive_rejections
            or self.stage2_round >= cfg.stage2_rounds
        ):
            self.stage = "done"
        else:
            evaluate.prefetch(self.components, basis=True)
        metrics.update(
            {
                "stage2/accepted_total": self.accepted,
                "stage2/consecutive_rejections": self.rejections,
                "stage2/evaluate_calls": evaluate.calls,
            }
        )
        metrics.update(self._centre_metrics())
        return Update(step, metrics, done=self.stage == "done", details=details)

    def _refit(self, population: Population, member_scores: np.ndarray, k: int, details: dict) -> dict[str, Any]:
        """Refit (U, Lambda) from the positive members, softmax-weighted to the round's target ESS.

        Without a positive member the previous search distribution is kept. The refitted cloud's
        spectrum and search eigenvalues go into ``details``.
        """
        positive = np.flatnonzero(member_scores > 0)
        target = ess_target(k, self.cfg.stage2_rounds, self.cfg.ess_start, self.cfg.ess_end)
        metrics: dict[str, Any] = {"stage2/ess_target": target, "stage2/positive": len(positive)}
        if not len(positive):
            return metrics
        weights, inv_temp = ess_weights(member_scores[positive], target)
        cloud = [population.members[i] for i in positive]
        self.components, self.eigenvalues = fit_cloud(cloud, weights, self.cfg.rank)
        metrics["stage2/ess"] = ess(weights)
        if math.isfinite(inv_temp):
            metrics["stage2/inv_temperature"] = inv_temp
        if len(self.eigenvalues):
            p = self.eigenvalues[self.eigenvalues > 0]
            metrics["stage2/search_eff_rank"] = float(np.exp(-np.sum(p * np.log(p))))
        matrix, _ = stack(cloud)
        cloud_metrics, spectrum = _cloud_observations("stage2", matrix, weights)
        metrics.update(cloud_metrics)
        details["stage2/cloud_spectrum"] = spectrum
        details["stage2/cloud_weights"] = [float(w) for w in weights]
        details["stage2/search_eigenvalues"] = _spectrum_rows(self.eigenvalues)
        return metrics

    # -- centre caches ----------------------------------------------------------------------
    def _centre_probe(self, evaluate: _Counted) -> Scores:
        if self.centre_probe is None:
            self.centre_probe = evaluate(Direction.zero(), "probe")
        return self.centre_probe

    def _centre_support(self, evaluate: _Counted) -> Scores:
        if self.centre_support is None:
            self.centre_support = evaluate(Direction.zero(), "support")
        return self.centre_support

    def _centre_metrics(self) -> dict[str, float]:
        """The centre's probe accuracy after the round, where known (read from the cache, never evaluated)."""
        return {} if self.centre_probe is None else {"corp/centre_probe_acc": self.centre_probe.accuracy}

    def _moved(self, probe: Scores) -> None:
        """The centre moved to a candidate whose probe scores we already have."""
        self.centre_probe = probe
        self.centre_support = None

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "stage2_round": self.stage2_round,
            "sigma": self.sigma,
            "lambda": self.lam,
            "eta": self.eta,
            "accepted": self.accepted,
            "rejections": self.rejections,
            "components": [c.to_json() for c in self.components],
            "eigenvalues": [float(e) for e in self.eigenvalues],
            "centre_probe": _scores_to_json(self.centre_probe),
            "centre_support": _scores_to_json(self.centre_support),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage = str(state["stage"])
        self.stage2_round = int(state["stage2_round"])
        self.sigma = float(state["sigma"])
        self.lam = float(state["lambda"])
        self.eta = float(state["eta"])
        self.accepted = int(state["accepted"])
        self.rejections = int(state["rejections"])
        self.components = [Direction.from_json(c) for c in state["components"]]
        self.eigenvalues = np.asarray(state["eigenvalues"], dtype=np.float64)
        self.centre_probe = _scores_from_json(state["centre_probe"])
        self.centre_support = _scores_from_json(state["centre_support"])


def _best(candidates: list[_Candidate], results: list[Scores]) -> int:
    """Best probe accuracy; ties: higher probe reward, then the shorter step, then grid order."""
    return min(
        range(len(candidates)),
        key=lambda i: (-results[i].accuracy, -results[i].mean_reward, candidates[i].direction.norm(), i),
    )


def _cloud_observations(prefix: str, matrix: np.ndarray, weights: np.ndarray) -> tuple[dict[str, float], list]:
    """(effective rank and kappa as metrics, the eigen-spectrum as rows) of a weighted cloud, one SVD."""
    if len(matrix) <= 1:
        return {}, []
    eig = cloud_spectrum(matrix, weights)
    stats = cloud_stats(matrix, weights, eig)
    if stats is None:
        return {}, []
    return {f"{prefix}/eff_rank": stats[0], f"{prefix}/kappa": stats[1]}, _spectrum_rows(eig)


def _spectrum_rows(eigenvalues: np.ndarray) -> list[dict[str, float]]:
    """Eigenvalues as table rows: 1-based component, value, share of the total."""
    total = float(np.sum(eigenvalues))
    return [
        {"component": i + 1, "eigenvalue": float(e), "share": float(e) / total if total > 0 else 0.0}
        for i, e in enumerate(eigenvalues)
    ]


def _elite_rows(m: Merge, scores: np.ndarray, sigmas: np.ndarray) -> list[dict[str, float]]:
    """One row per elite member of a merge: its score and the two passes' weights."""
    return [
        {
            "member": int(i),
            "score": float(scores[i]),
            "sigma": float(sigmas[i]),
            "first_pass_weight": float(w1),
            "weight": float(w2),
            "alignment": float(a),
            "dispersion": float(d),
        }
        for i, w1, w2, a, d in zip(m.elite, m.first_pass, m.weights, m.alignment, m.dispersion, strict=True)
    ]


def _scores_to_json(scores: Scores | None) -> dict | None:
    if scores is None:
        return None
    return {"rewards": [float(r) for r in scores.rewards], "correct": [bool(c) for c in scores.correct]}


def _scores_from_json(data: dict | None) -> Scores | None:
    if data is None:
        return None
    return Scores(np.asarray(data["rewards"], dtype=np.float64), np.asarray(data["correct"], dtype=bool))
