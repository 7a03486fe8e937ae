"""CoRP: consolidate one rewarded population into one model, then refine it in gated rounds.

Round 0 proposes N isotropic members (stage 0) and collapses their scores into a single
step (stage 1, ``stage1.merge``). Rounds >= 1 draw local members around the centre from
a low-rank plus isotropic search distribution, merge them, and commit a merged step
only if it survives a held-out gate and a probe line search (stage 2). See docs/method.md
§4; where this code differs from the published code (§7), the choice is documented where it is made.

This module holds the config and the state between rounds. The merges and the candidate grid
are in ``stage1.py``, stage 2's members, selection, gate and line search in ``stage2.py``; each
round returns a typed record (``records.py``) that ``observations.py`` turns into its metrics.
It runs a little under 500 lines because ``CorpConfig`` documents each option where it is
defined, and the operator's round state reads best next to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from corp.consolidate.base import (
    OPERATORS,
    ConsolidationConfig,
    Evaluate,
    Operator,
    Population,
    Update,
    isotropic_population,
)
from corp.consolidate.checks import at_least as _at_least
from corp.consolidate.checks import choice as _choice
from corp.consolidate.checks import fail as _fail
from corp.consolidate.counted import CountedEvaluate
from corp.consolidate.observations import stage1_observations, stage2_observations
from corp.consolidate.records import LineSearch, PooledTest, Refit, Stage1Record, Stage2Record
from corp.consolidate.stage1 import Candidate, best_on_probe, best_sigma, candidate_grid, elite_reach, min_elite_size
from corp.consolidate.stage2 import (
    constructive_scores,
    ess_asked,
    ess_target,
    ess_weights,
    fit_cloud,
    line_search,
    local_population,
    next_lambda,
    pooled_sign_test,
    select_and_gate,
    split_support,
)
from corp.perturb.direction import Direction, stack
from corp.scores import PopulationScores, Scores

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
    ess_end: float = 2.0  # ... shrinking to this at the last round
    # "linear": the target falls linearly and is asked as it is; "published": it falls geometrically
    # (16/8/4 over 3 rounds) and min(#positive members, 2 x target) is asked.
    ess_schedule: str = "linear"
    # Seed of the selection/gate split of the support set; null: the run seed + 17, as published, so
    # every run seed also draws its own split (a fixed int gives every seed the same halves).
    split_seed: int | None = None
    # Stage-2 semantics where ours and the published code differ (docs/method.md §7):
    # "best": only the best proposal on the selection half is tried on the gate half;
    # "filter": every proposal is scored on both halves, and the best by selection among those
    # passing the gate is kept (published).
    gate_mode: str = "best"
    # Initial sigma of the local members: "member": the stage-1 elite's w2-weighted member length;
    # "best_sigma": the sigma of perturbation.sigmas whose stage-0 members had the best mean reward
    # (published). Either way a rejected round halves it.
    local_sigma: str = "member"
    # Local members a ~ N(0, sigma^2 [lam I + (1 - lam) U L U^T]): "normalised": L from the uncentred
    # second moment of the cloud, summing to one, so E||a||^2 = sigma^2; "published": L the absolute
    # eigenvalues of the centred cloud (of order sigma^2, so the low-rank part is negligible and members
    # are isotropic at sigma * sqrt(lam)).
    local_sampler: str = "normalised"
    # Proposal steps eta * g: "same": in scale_unit (with "member", they shrink as sigma halves);
    # "absolute": eta is a length in coefficient norm, from the committed stage-1 step (published).
    stage2_step_unit: str = "same"
    # How a round's step is accepted (docs/method.md §4.3): "two_step" (published): the gate half
    # (constructive score > 0 and paired LCB > 0), then the probe line search (LCB > 0, no drop);
    # "pooled_sign": the line search picks alpha on probe and the step is accepted when, on the gate
    # half and the probe together, its constructive score is > 0 and an exact one-sided sign test on
    # the examples where it and the centre disagree rejects "no gain" at level sign_level.
    stage2_test: str = "two_step"
    sign_level: float = 0.05  # pooled_sign's false-accept rate for a step without gain (per alpha tried)

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
        _choice("gate_mode", self.gate_mode, ("best", "filter"))
        if self.local_sigma == "sqrt_lambda":  # the pre-fix name of the published radius
            _fail("local_sigma", self.local_sigma, "allowed: member, best_sigma (the published radius "
                  "sigma * sqrt(lambda) is consolidation.local_sampler=published)")  # fmt: skip
        _choice("local_sigma", self.local_sigma, ("member", "best_sigma"))
        _choice("local_sampler", self.local_sampler, ("normalised", "published"))
        _choice("stage2_step_unit", self.stage2_step_unit, ("same", "absolute"))
        _choice("ess_schedule", self.ess_schedule, ("linear", "published"))
        _choice("stage2_test", self.stage2_test, ("two_step", "pooled_sign"))
        if self.stage2_test == "pooled_sign" and self.gate_mode == "filter":
            _fail("stage2_test", self.stage2_test, "needs consolidation.gate_mode=best: filter chooses on the "
                  "gate half, which the pooled test must not have seen")  # fmt: skip
        if not 0.0 < self.sign_level < 1.0:
            _fail("sign_level", self.sign_level, "must be in (0, 1)")
        _at_least("stage2_rounds", self.stage2_rounds, 0)
        _at_least("local_members", self.local_members, 2)
        _at_least("max_accepted", self.max_accepted, 1)
        _at_least("max_consecutive_rejections", self.max_consecutive_rejections, 1)
        _at_least("rank", self.rank, 1)
        if self.split_seed is not None:
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


@OPERATORS.register("corp")
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

    config_class = CorpConfig
    display_name = "CoRP"
    compared = True  # reports compare its rows with the base and the RandOpt baselines

    @classmethod
    def from_config(cls, cfg: Any) -> CorpOperator:
        """Stage 2 also splits the support split (``task.support_size``) into selection and gate halves."""
        p = cfg.perturbation
        return cls(cfg.consolidation, p.population_size, list(p.sigmas), cfg.seed, cfg.task.support_size,
                   p.antithetic)  # fmt: skip

    def __init__(
        self,
        cfg: CorpConfig,
        population_size: int,
        sigmas: list[float],
        seed: int,
        support_size: int,
        antithetic: bool = False,
    ):
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
        self.antithetic = bool(antithetic)  # stage 0 only: local members are not mirrored
        split_seed = self.seed + 17 if cfg.split_seed is None else cfg.split_seed  # published: run seed + 17
        self.selection, self.gate = split_support(support_size, split_seed)
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
            pop = isotropic_population(self.seed, round_idx, self.population_size, self.sigmas, self.antithetic)
            pop.keep = elite_reach(self.population_size, self.cfg.quantiles)  # stage 2 reads every member
            return pop
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
                self.cfg.local_sampler,
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
        counted = CountedEvaluate(evaluate)
        if self.stage == "stage1":
            return self._stage1(population, scores, counted)
        return self._stage2(population, scores, counted)

    # -- stage 1 ----------------------------------------------------------------------------
    def _stage1(self, population: Population, scores: PopulationScores, evaluate: CountedEvaluate) -> Update:
        cfg = self.cfg
        rewards = scores.mean_rewards.astype(np.float64)  # observed; raced-out members over what was decoded
        matrix, basis = stack(population.members)
        selection = scores.selection_rewards.astype(np.float64)
        candidates, duplicates = self._candidates(matrix, basis, selection, 1.0, cfg.scales, cfg.scale_unit)
        evaluate.prefetch([c.direction for c in candidates])  # all (q, beta) merges share the elite's seeds
        centre = self._centre_probe(evaluate)
        results = [evaluate(c.direction, "probe") for c in candidates]
        best = best_on_probe(candidates, results)
        cand, res = candidates[best], results[best]
        commit = cfg.stage1_commit == "always" or res.accuracy >= centre.accuracy

        m = cand.merge
        elite = [population.members[i] for i in m.elite]
        self.components, self.eigenvalues = fit_cloud(elite, m.weights, cfg.rank, cfg.local_sampler)
        self.sigma = best_sigma(population.sigmas, rewards) if cfg.local_sigma == "best_sigma" else m.member_norm
        self.eta = cand.direction.norm() if cfg.stage2_step_unit == "absolute" else cand.scale
        step = cand.direction if commit else None
        if commit:
            self._moved(res)
        self.stage = "stage2" if cfg.stage2_rounds > 0 else "done"
        if self.stage == "stage2":
            evaluate.prefetch(self.components, basis=True)  # every local member of the next round uses them
        record = Stage1Record(
            rewards=rewards,
            sigmas=population.sigmas,
            candidates=candidates,
            duplicates=duplicates,
            probe=results,
            best=best,
            centre=centre,
            committed=commit,
            elite_cloud=matrix[m.elite],
            search_eigenvalues=self.eigenvalues,
            evaluate_calls=evaluate.calls,
            centre_probe_acc=self._centre_probe_acc(),
        )
        metrics, details = stage1_observations(record)
        return Update(step, metrics, done=self.stage == "done", details=details)

    def _candidates(
        self, matrix: np.ndarray, basis: np.ndarray, scores: np.ndarray, eta: float, grid: list[float], unit: str
    ) -> tuple[list[Candidate], int]:
        cfg = self.cfg
        return candidate_grid(matrix, basis, scores, cfg.quantiles, cfg.betas, unit, eta, grid)

    # -- stage 2 ----------------------------------------------------------------------------
    def _stage2(self, population: Population, scores: PopulationScores, evaluate: CountedEvaluate) -> Update:
        """One gated round: score members, merge, pick on selection, gate, line-search on probe."""
        cfg = self.cfg
        if scores.correct.shape[1] != len(self.selection):
            raise ValueError(f"stage-2 members must be scored on the {len(self.selection)} selection examples")
        k = self.stage2_round
        lam, eta = self.lam, self.eta
        support = self._centre_support(evaluate)
        member_scores = constructive_scores(support.correct[self.selection], scores.correct, cfg.lambda_reg)

        matrix, basis = stack(population.members)
        unit = "absolute" if cfg.stage2_step_unit == "absolute" else cfg.scale_unit
        proposals, duplicates = self._candidates(matrix, basis, member_scores, eta, cfg.step_grid, unit)
        evaluate.prefetch([p.direction for p in proposals])
        pooled_sign = cfg.stage2_test == "pooled_sign"  # the gate half waits for the line search's pick
        sel = select_and_gate(proposals, support, self.selection, self.gate, cfg.lambda_reg, cfg.gate_z, evaluate,
                              "select" if pooled_sign else cfg.gate_mode)  # fmt: skip
        prop = proposals[sel.best]
        search, pooled = None, None
        if pooled_sign:
            search, pooled = self._pooled(prop.direction, support, evaluate)
        elif sel.gated:
            search = line_search(prop.direction, self._centre_probe(evaluate), cfg.line_search, cfg.gate_z, evaluate)
        step = None
        if search is not None and search.accepted:
            alpha = search.alphas[search.pick]
            step = prop.direction * alpha
            self.eta = prop.scale * alpha
            self._moved(search.probe[search.pick])
            self.accepted += 1
            self.rejections = 0
        else:
            self.sigma *= SIGMA_DECAY
            self.rejections += 1
        refit = self._refit(population, member_scores, k)
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
        record = Stage2Record(
            round=k,
            sigma=float(population.sigmas[0]),
            lam=lam,
            eta=eta,
            member_scores=member_scores,
            sigmas=population.sigmas,
            proposals=proposals,
            duplicates=duplicates,
            selection=sel,
            line_search=search,
            pooled=pooled,
            refit=refit,
            accepted_total=self.accepted,
            consecutive_rejections=self.rejections,
            evaluate_calls=evaluate.calls,
            centre_probe_acc=self._centre_probe_acc(),
        )
        metrics, details = stage2_observations(record)
        return Update(step, metrics, done=self.stage == "done", details=details)

    def _pooled(
        self, direction: Direction, support: Scores, evaluate: CountedEvaluate
    ) -> tuple[LineSearch, PooledTest]:
        """``stage2_test=pooled_sign``: the line search picks alpha on probe; the pick is scored on the
        gate half, and the sign test on the gate half and the probe together decides the round."""
        cfg = self.cfg
        centre_probe = self._centre_probe(evaluate)
        search = line_search(direction, centre_probe, cfg.line_search, cfg.gate_z, evaluate)
        gate = evaluate(direction * search.alphas[search.pick], "support", self.gate)
        pooled = pooled_sign_test(
            np.concatenate([support.correct[self.gate], centre_probe.correct]),
            np.concatenate([gate.correct, search.probe[search.pick].correct]),
            cfg.lambda_reg,
            cfg.sign_level,
        )
        return replace(search, accepted=pooled.passed), pooled

    def _refit(self, population: Population, member_scores: np.ndarray, k: int) -> Refit:
        """Refit (U, Lambda) from the positive members, softmax-weighted to the round's ESS.

        Without a positive member the previous search distribution is kept.
        """
        cfg = self.cfg
        positive = np.flatnonzero(member_scores > 0)
        target = ess_target(k, cfg.stage2_rounds, cfg.ess_start, cfg.ess_end, cfg.ess_schedule)
        if not len(positive):
            return Refit(target, positive, None, math.nan, self.eigenvalues, None)
        target = ess_asked(target, len(positive), cfg.ess_schedule)
        weights, inv_temp = ess_weights(member_scores[positive], target)
        cloud = [population.members[i] for i in positive]
        self.components, self.eigenvalues = fit_cloud(cloud, weights, cfg.rank, cfg.local_sampler)
        return Refit(target, positive, weights, inv_temp, self.eigenvalues, stack(cloud)[0])

    # -- centre caches ----------------------------------------------------------------------
    def _centre_probe(self, evaluate: CountedEvaluate) -> Scores:
        if self.centre_probe is None:
            self.centre_probe = evaluate(Direction.zero(), "probe")
        return self.centre_probe

    def _centre_support(self, evaluate: CountedEvaluate) -> Scores:
        if self.centre_support is None:
            self.centre_support = evaluate(Direction.zero(), "support")
        return self.centre_support

    def _centre_probe_acc(self) -> float | None:
        """The centre's probe accuracy after the round, where known (read from the cache, never evaluated)."""
        return None if self.centre_probe is None else self.centre_probe.accuracy

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


def _scores_to_json(scores: Scores | None) -> dict | None:
    if scores is None:
        return None
    return {"rewards": [float(r) for r in scores.rewards], "correct": [bool(c) for c in scores.correct]}


def _scores_from_json(data: dict | None) -> Scores | None:
    if data is None:
        return None
    return Scores(np.asarray(data["rewards"], dtype=np.float64), np.asarray(data["correct"], dtype=bool))
