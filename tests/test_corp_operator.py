"""CoRP operator against fake evaluators with a known optimum (no LM)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from transformers import LlamaConfig, LlamaForCausalLM

from corp.config import validate
from corp.consolidate.base import Population, member_seed
from corp.consolidate.corp import CorpConfig, CorpOperator
from corp.consolidate.counted import CountedEvaluate
from corp.consolidate.stage1 import Candidate, best_sigma, elite_indices, merge, min_elite_size, zscore
from corp.consolidate.stage2 import (
    constructive_scores,
    ess,
    ess_asked,
    ess_target,
    ess_weights,
    fit_cloud,
    local_population,
    next_lambda,
    paired_lcb,
    pooled_sign_test,
    select_and_gate,
    sign_p_value,
    split_support,
)
from corp.perturb.direction import Direction, stack
from corp.perturb.noise import NoiseSource
from corp.perturb.space import ParameterSpace
from corp.scores import PopulationScores, Scores
from tests.conftest import ROOT, compose_config

SEED = 7
N = 32
CONF = Path(__file__).resolve().parents[1] / "conf" / "consolidation"


class Planted:
    """Hidden unit target t over the round-0 seeds; example j is correct when lo_j < t.(centre + d) < hi_j.

    Accuracy rises as the centre moves toward t and falls when it overshoots or goes the
    other way. The fake tracks the committed centre like the real loop does.
    """

    def __init__(self, n_support: int = 128, n_probe: int = 64, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        seeds = [member_seed(SEED, 0, i) for i in range(N)]
        t = Direction(np.array(seeds), rng.standard_normal(N))
        self.target = t * (1.0 / t.norm())
        self.lo = {"support": rng.uniform(-0.3, 1.0, n_support), "probe": rng.uniform(-0.3, 1.0, n_probe)}
        self.width = {"support": 1.5, "probe": 1.5}
        self.centre = Direction.zero()
        self.calls: list[tuple[Direction, str, Scores]] = []

    def __call__(self, direction: Direction, split: str, indices: np.ndarray | None = None) -> Scores:
        assert split in ("support", "probe")
        p = self.target.dot(self.centre + direction)
        lo = self.lo[split] if indices is None else self.lo[split][indices]
        correct = (lo < p) & (p < lo + self.width[split])
        scores = Scores(correct.astype(np.float64), correct)
        self.calls.append((direction, split, scores))
        return scores

    def accuracy(self, split: str = "probe") -> float:
        return self(Direction.zero(), split).accuracy

    def score(self, pop: Population) -> PopulationScores:
        return PopulationScores.stack([self(m, pop.split, pop.indices) for m in pop.members])


class Neutral(Planted):
    """Every model gets the same fixed outcomes: no direction helps or hurts."""

    def __call__(self, direction: Direction, split: str, indices: np.ndarray | None = None) -> Scores:
        rng = np.random.default_rng(1 if split == "support" else 2)
        correct = rng.random(len(self.lo[split])) < 0.5
        if indices is not None:
            correct = correct[indices]
        self.calls.append((direction, split, Scores(correct.astype(np.float64), correct)))
        return Scores(correct.astype(np.float64), correct)


def config(**overrides) -> CorpConfig:
    base = dict(
        quantiles=[0.5, 0.75],
        betas=[2.0, 20.0],
        scales=[0.5, 1.0, 2.0, 4.0],
        stage2_rounds=2,
        local_members=16,
        ess_start=4.0,
        ess_end=2.0,
    )
    return CorpConfig(**(base | overrides))


def operator(cfg: CorpConfig, fake: Planted) -> CorpOperator:
    return CorpOperator(cfg, population_size=N, sigmas=[1.0], seed=SEED, support_size=len(fake.lo["support"]))


def play(op: CorpOperator, fake: Planted, start: int = 0, rounds: int = 10) -> tuple[list[Direction | None], list]:
    """The loop: propose, score, update, commit; returns the per-round steps and updates."""
    steps, updates = [], []
    for r in range(start, start + rounds):
        pop = op.propose(r)
        if pop is None:
            break
        upd = op.update(r, pop, fake.score(pop), fake)
        steps.append(upd.step)
        updates.append(upd)
        if upd.step is not None:
            fake.centre = fake.centre + upd.step
        if upd.done:
            break
    return steps, updates


# -- stage 1 ------------------------------------------------------------------------------------


def test_stage1_improves_probe_and_picks_best_candidate():
    fake = Planted()
    base = fake.accuracy()
    op = operator(config(stage2_rounds=0), fake)
    steps, updates = play(op, fake)
    assert len(steps) == 1 and updates[0].done
    m = updates[0].metrics
    assert m["stage1/committed"] == 1 and steps[0] is not None
    assert fake.accuracy() > base + 0.2
    assert m["stage1/centre_probe_acc"] == pytest.approx(base)
    # The committed step is the best of the probe-scored candidates.
    probed = [(d, s.accuracy) for d, split, s in fake.calls if split == "probe" and len(d)]
    assert len(probed) == m["stage1/candidates"]
    best = max(acc for _, acc in probed)
    assert m["stage1/probe_acc"] == best
    assert any(d == steps[0] and acc == best for d, acc in probed)
    assert m["stage1/evaluate_calls"] == 1 + m["stage1/candidates"]


def test_stage1_keeps_centre_when_every_candidate_is_worse():
    fake = Planted()
    # Support rewards still pull toward +t, but on probe the centre sits in every example's narrow window.
    fake.lo["probe"] = np.random.default_rng(5).uniform(-0.1, -0.01, 64)
    fake.width["probe"] = 0.11
    op = operator(config(stage2_rounds=0, scales=[4.0]), fake)
    steps, updates = play(op, fake)
    m = updates[0].metrics
    assert m["stage1/probe_acc"] < m["stage1/centre_probe_acc"]
    assert steps == [None] and m["stage1/committed"] == 0
    fake.centre = Direction.zero()
    steps, _ = play(operator(config(stage2_rounds=0, scales=[4.0], stage1_commit="always"), fake), fake)
    assert steps[0] is not None


def test_first_pass_weights_follow_rewards():
    matrix, basis = stack([Direction.from_seed(s, 1.0) for s in range(10)])
    rewards = np.linspace(0.0, 0.9, 10)
    m = merge(matrix, basis, rewards, q=0.5, beta=5.0)
    assert np.all(np.diff(m.first_pass) > 0) and np.all(np.diff(m.weights) > 0)
    assert m.first_pass.sum() == pytest.approx(1.0) and m.weights.sum() == pytest.approx(1.0)
    equal = merge(matrix, basis, np.full(10, 0.4), q=0.5, beta=5.0)
    assert len(equal.elite) == 10  # ties all enter
    np.testing.assert_array_equal(equal.first_pass, np.full(10, 0.1))
    np.testing.assert_allclose(equal.weights, 0.1)  # equal members: compatibility is flat too


def test_compatibility_prefers_aligned_members():
    # Two members along e0 and one orthogonal, all with the same reward: pass 2 favours the aligned ones.
    members = [Direction.from_seed(0, 1.0), Direction.from_pairs([(0, 1.0), (1, 0.1)]), Direction.from_seed(2, 1.0)]
    matrix, basis = stack(members)
    m = merge(matrix, basis, np.full(3, 0.5), q=0.5, beta=1.0)
    assert m.alignment[2] < m.alignment[0] and m.dispersion[2] > m.dispersion[0]
    assert m.weights[2] < m.weights[0] and m.weights[2] < m.first_pass[2]


def test_elite_size_respects_q():
    rewards = np.random.default_rng(0).permutation(20) / 20.0
    for q in (0.5, 0.7, 0.9):
        elite = elite_indices(rewards, q)
        assert len(elite) == min_elite_size(20, q) == round(20 - np.ceil(q * 19))
        rest = np.setdiff1d(np.arange(20), elite)
        assert rewards[elite].min() > rewards[rest].max()
    assert np.all(zscore(np.full(5, 3.0)) == 0.0)


def test_duplicates_are_scored_once():
    fake = Neutral()  # all rewards equal: every (q, beta) gives the same elite and weights
    cfg = config(stage2_rounds=0)
    _, updates = play(operator(cfg, fake), fake)
    m = updates[0].metrics
    assert m["stage1/candidates"] == len(cfg.scales)
    assert m["stage1/duplicates"] == (len(cfg.quantiles) * len(cfg.betas) - 1) * len(cfg.scales)
    assert m["stage1/evaluate_calls"] == 1 + len(cfg.scales)


# -- stage 2 ------------------------------------------------------------------------------------


def test_stage2_accepts_a_real_improvement():
    fake = Planted()
    op = operator(config(scales=[0.25], local_members=16, stage2_rounds=3), fake)  # stage 1 stops short
    steps, updates = play(op, fake)
    after_stage1 = updates[0].metrics["stage1/probe_acc"]
    stage2 = [u.metrics for u in updates[1:]]
    assert any(m["stage2/accepted"] for m in stage2)
    for m, step in zip(stage2, steps[1:], strict=True):
        assert (step is not None) == bool(m["stage2/accepted"])
        if m["stage2/accepted"]:
            assert m["stage2/gated"] == 1 and m["stage2/probe_lcb"] > 0
            assert m["stage2/probe_acc"] >= m["stage2/centre_probe_acc"]
    assert fake.accuracy() > after_stage1
    # The first stage-2 round reuses stage 1's probe scores for the centre: no centre probe call.
    first = stage2[0]
    expected = 1 + first["stage2/proposals"] + 1 + (3 if first["stage2/gated"] else 0)
    assert first["stage2/evaluate_calls"] == expected


def test_gate_rejects_without_real_improvement():
    fake = Neutral()
    op = operator(config(stage2_rounds=3), fake)
    steps, updates = play(op, fake)
    assert steps[1:] == [None, None]  # two consecutive rejections end the run
    assert updates[-1].done and op.propose(3) is None
    sigmas = [u.metrics["stage2/sigma"] for u in updates[1:]]
    assert sigmas[1] == pytest.approx(sigmas[0] / 2) and op.sigma == pytest.approx(sigmas[0] / 4)
    assert all(u.metrics["stage2/gated"] == 0 for u in updates[1:])


def test_gate_statistics():
    centre = np.array([0, 0, 0, 1, 1, 1, 0, 1], dtype=bool)
    better = centre.copy()
    better[[0, 1]] = True
    assert constructive_scores(centre, better, 2.0) == pytest.approx(2 / 8)
    worse = better.copy()
    worse[3] = False
    assert constructive_scores(centre, worse, 2.0) == pytest.approx(0.0)  # 2 fixes - 2 * 1 regression
    mean, lcb = paired_lcb(centre, better, 1.0)
    assert mean == pytest.approx(0.25) and 0 < lcb < mean
    assert paired_lcb(centre, centre, 1.0) == (0.0, 0.0)
    sel, gate = split_support(11, 0)
    assert len(sel) == 5 and len(gate) == 6 and sorted(np.concatenate([sel, gate])) == list(range(11))
    assert next_lambda(0.5, 1.0) == pytest.approx(0.325) and next_lambda(0.5, 0.0) == pytest.approx(0.725)


def test_ess_bisection_hits_target():
    scores = np.random.default_rng(3).standard_normal(30)
    for target in (2.0, 4.0, 16.0):
        w, b = ess_weights(scores, target)
        assert ess(w) == pytest.approx(target, rel=1e-6) and b > 0
        assert w[np.argmax(scores)] == w.max()
    w, b = ess_weights(scores, 50.0)
    assert b == 0.0 and np.allclose(w, 1 / 30)


def test_local_members_follow_the_search_distribution():
    fake = Planted()
    op = operator(config(), fake)
    play(op, fake, rounds=1)
    pop = op.propose(1)
    assert pop.split == "support" and np.array_equal(pop.indices, op.selection)
    assert len(pop) == 16 and len(op.components) == op.eigenvalues.size > 0
    assert op.eigenvalues.sum() == pytest.approx(1.0)
    norms = np.array([m.norm() for m in pop.members])
    assert np.mean(norms**2) == pytest.approx(op.sigma**2, rel=0.5)  # E||a||^2 = sigma^2
    fresh = [m.dot(Direction.from_seed(int(s))) for m, s in zip(pop.members, pop.seeds, strict=True)]
    np.testing.assert_allclose(fresh, op.sigma * np.sqrt(op.lam))
    assert all(a == b for a, b in zip(pop.members, op.propose(1).members, strict=True))


# -- config, determinism, checkpoints ------------------------------------------------------------


def test_config_validation_names_the_key():
    with pytest.raises(ValueError, match=r"consolidation\.quantiles=\[1\.2\]: every q must be in \(0, 1\)"):
        CorpConfig(quantiles=[1.2])
    for key, value in [("betas", [-1.0]), ("scales", []), ("scale_unit", "meters"), ("rank", 0), ("ess_end", 0.5)]:
        with pytest.raises(ValueError, match=rf"consolidation\.{key}="):
            CorpConfig(**{key: value})
    with pytest.raises(ValueError, match=r"consolidation\.local_members=4: .*consolidation\.quantiles"):
        CorpOperator(CorpConfig(quantiles=[0.9], local_members=4), 32, [1e-3], 0, 64)
    # The population is checked first: its message is the one a user with both too small sees.
    with pytest.raises(ValueError, match=r"perturbation\.population_size=2 "):
        CorpOperator(CorpConfig(quantiles=[0.9], local_members=4), 2, [1e-3], 0, 64)
    with pytest.raises(ValueError, match=r"task\.support_size=3"):
        CorpOperator(CorpConfig(), 32, [1e-3], 0, 3)
    with pytest.raises(ValueError, match=r"perturbation\.population_size=8 .*consolidation\.quantiles=\[0\.9\]"):
        CorpOperator(CorpConfig(quantiles=[0.9], stage2_rounds=0), 8, [1e-3], 0, 64)
    CorpOperator(CorpConfig(quantiles=[0.9], stage2_rounds=0), 11, [1e-3], 0, 64)  # 11 - ceil(9) = 2 is enough


@pytest.mark.parametrize("name", ["corp", "corp_paper"])
def test_yaml_matches_schema(name):
    raw = OmegaConf.load(CONF / f"{name}.yaml")
    assert list(raw.pop("defaults")) == ["/consolidation_corp_schema@_here_", "_self_"]
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(CorpConfig), raw))
    assert isinstance(cfg, CorpConfig) and cfg.name == "corp"


def test_determinism():
    runs = []
    for _ in range(2):
        fake = Planted()
        steps, updates = play(operator(config(scales=[0.25]), fake), fake)
        runs.append((steps, [u.metrics for u in updates]))
    assert runs[0] == runs[1]
    assert any(s is not None for s in runs[0][0])


def test_state_dict_round_trip():
    fake_a, fake_b = Planted(), Planted()
    a = operator(config(scales=[0.25]), fake_a)
    play(a, fake_a, rounds=1)
    state = json.loads(json.dumps(a.state_dict()))
    b = operator(config(scales=[0.25]), fake_b)
    b.load_state_dict(state)
    fake_b.centre = fake_a.centre
    assert b.state_dict() == state
    steps_a, upd_a = play(a, fake_a, start=1)
    steps_b, upd_b = play(b, fake_b, start=1)
    assert steps_a == steps_b and [u.metrics for u in upd_a] == [u.metrics for u in upd_b]


def test_local_population_exposes_its_structure():
    fake = Planted()
    op = operator(config(), fake)
    play(op, fake, rounds=1)
    pop = op.propose(1)
    for i, member in enumerate(pop.members):
        rebuilt = Direction.combine(
            [Direction.from_seed(int(pop.seeds[i])), *pop.components], [pop.fresh_coeff, *pop.coords[i]]
        ).pruned()
        assert rebuilt == member


# -- the optimised noise path ------------------------------------------------------------------


class WeightReader(Planted):
    """Planted, but read from the live weights: p = (live - base) . T / D with T = sum_i t_i eps_i.

    So every member and candidate really goes through ``ParameterSpace`` (dense rows,
    prefetch, basis decompositions), and a wrongly built model changes the scores.
    """

    def __init__(self, space) -> None:
        super().__init__()
        self.space = space
        ref = NoiseSource()
        parts = []
        for name, p in space.params:
            acc = torch.zeros(p.numel())
            for s, c in zip(self.target.seeds.tolist(), self.target.coeffs.tolist()):
                acc += c * ref.noise(s, name, (p.numel(),))
            parts.append(acc)
        self.dense_target = torch.cat(parts).double()
        self.base = self._flat()
        if hasattr(space, "prefetch") and space.dense.slots > 1:
            self.prefetch = space.prefetch  # the hint the loop forwards

    @property
    def centre(self) -> Direction:
        return self.space.committed if hasattr(self, "space") else Direction.zero()

    @centre.setter
    def centre(self, value: Direction) -> None:  # play() moves the centre: commit it, as the loop does
        if hasattr(self, "space"):
            step = (value - self.space.committed).pruned()
            if len(step):
                self.space.commit(step)

    def _flat(self) -> torch.Tensor:
        return torch.cat([p.detach().double().flatten() for _, p in self.space.params])

    def __call__(self, direction, split, indices=None):
        with self.space.perturbed(direction):
            p = float((self._flat() - self.base) @ self.dense_target) / self.space.dim
        lo = self.lo[split] if indices is None else self.lo[split][indices]
        correct = (lo < p) & (p < lo + self.width[split])
        return Scores(correct.astype(np.float64), correct)


def _space(rows: int | None) -> ParameterSpace:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg)
    dim = sum(p.numel() for p in model.parameters())
    if rows is None:
        return ParameterSpace(model, NoiseSource(), dense_cache=False)
    return ParameterSpace(model, NoiseSource(), noise_cache_mb=(rows + 0.5) * 4 * dim / 2**20)


def test_dense_rows_and_hints_change_draws_not_decisions():
    """A whole CoRP run scored from live weights: seed-by-seed vs dense rows + prefetch hints.

    Tolerance: identical steps and metrics. Dense rows differ from the seed-by-seed sum by fp32
    rounding (~1e-7 relative), which moves a score only if it sits that close to a threshold.
    """
    runs = {}
    for rows in (None, 12):
        space = _space(rows)
        fake = WeightReader(space)
        steps, updates = play(operator(config(scales=[0.25], local_members=16), fake), fake)
        runs[rows] = (steps, [u.metrics for u in updates], space.noise.draws, live(space))
    plain, fast = runs[None], runs[12]
    assert any(s is not None for s in plain[0][1:])  # a stage-2 round was accepted: every path ran
    assert plain[0] == fast[0] and plain[1] == fast[1]
    assert torch.equal(plain[3], fast[3])  # commits are rebuilt from seeds: bit-identical centres
    assert fast[2] < plain[2] / 3


def live(space: ParameterSpace) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for _, p in space.params])


def test_every_name_the_plots_read_is_written_by_a_round():
    """observations.py writes what run_plots reads: the key constants and the row types."""
    from dataclasses import fields

    from corp.consolidate.observations import CENTRE_PROBE_ACC, EliteRow, SpectrumRow, Stage1Keys, Stage2Keys
    from corp.report.run_plots import trajectory_points

    fake = Planted()
    _, updates = play(operator(config(scales=[0.25], stage2_rounds=3), fake), fake)
    gated = [u for u in updates[1:] if u.metrics[Stage2Keys.GATED] and Stage2Keys.SPECTRUM in u.details]
    assert gated, "no gated stage-2 round with a refitted cloud: the test needs one"
    for keys, update in ((Stage1Keys, updates[0]), (Stage2Keys, gated[0])):
        names = [v for k, v in vars(keys).items() if k.isupper()]
        written = {**update.metrics, **update.details}
        assert [n for n in names if n not in written] == []
        assert all(SpectrumRow.read(r).share >= 0 for r in update.details[keys.SPECTRUM])
    assert all(CENTRE_PROBE_ACC in u.metrics for u in updates)
    elite = [EliteRow.read(r) for r in updates[0].details[Stage1Keys.ELITE_MEMBERS]]
    assert [f.name for f in fields(EliteRow)] == list(updates[0].details[Stage1Keys.ELITE_MEMBERS][0])
    assert sum(r.weight for r in elite) == pytest.approx(1.0)
    rounds = [{"round": i, "metrics": u.metrics, "details": u.details} for i, u in enumerate(updates)]
    points = trajectory_points(rounds)
    assert [p["stage"] for p in points] == ["stage 1"] + [f"stage 2 #{k + 1}" for k in range(len(updates) - 1)]
    assert [p["outcome"] == "accepted" for p in points[1:]] == [bool(u.metrics["stage2/accepted"]) for u in updates[1:]]


# -- the published stage-2 semantics, as options ----------------------------------------------------


def test_gate_filter_keeps_the_best_proposal_that_passes_the_gate():

    sel_half, gate_half = np.arange(0, 8), np.arange(8, 16)
    centre = Scores(np.zeros(16), np.zeros(16, dtype=bool))
    props = [Candidate(Direction.from_seed(s, 0.1), None, 1.0, 1.0) for s in (1, 2, 3)]
    # proposal 0 wins on selection but regresses nothing and fixes nothing on the gate half;
    # proposal 1 is second on selection and fixes 3 of 8 gate examples; proposal 2 fixes nothing anywhere
    outcome = {1: ([1, 1, 1, 1, 0, 0, 0, 0], [0] * 8), 2: ([1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]),
               3: ([0] * 8, [0] * 8)}  # fmt: skip
    calls = []

    def evaluate(direction, split, indices=None):
        calls.append(split)
        sel, gate = outcome[int(direction.seeds[0])]
        correct = np.array(sel if indices is sel_half else gate, dtype=bool)
        return Scores(correct.astype(float), correct)

    best = select_and_gate(props, centre, sel_half, gate_half, 2.0, 1.0, evaluate)
    assert best.best == 0 and not best.gated and len(calls) == 4 and best.gate_scores is None
    calls.clear()
    filtered = select_and_gate(props, centre, sel_half, gate_half, 2.0, 1.0, evaluate, mode="filter")
    assert filtered.best == 1 and filtered.gated and len(calls) == 6
    assert filtered.gate_scores == pytest.approx([0.0, 3 / 8, 0.0]) and filtered.gate_lcbs[0] == 0.0


def test_absolute_steps_follow_the_published_code():
    fake = Planted()
    paper = operator(config(stage2_rounds=1, local_sampler="published", stage2_step_unit="absolute"), fake)
    steps, _ = play(paper, fake, rounds=1)
    assert steps[0] is not None
    eta = paper.eta
    assert eta == pytest.approx(steps[0].norm())  # the committed step's own length
    pop = paper.propose(1)
    scores = fake.score(pop)
    before = len(fake.calls)
    upd = paper.update(1, pop, scores, fake)
    rows = upd.details["stage2/proposal_scores"]
    assert {round(r["scale"] / eta, 9) for r in rows} <= {0.5, 1.0, 2.0}
    sel = [d for d, split, _ in fake.calls[before:] if split == "support" and len(d)][: len(rows)]
    assert sorted(round(d.norm() / eta, 9) for d in sel) == sorted(round(r["scale"] / eta, 9) for r in rows)


def _parts(pop, run_seed: int, round_idx: int) -> tuple[np.ndarray, np.ndarray]:
    """Each member's isotropic coefficient (on its own fresh seed) and the norm of the rest (the low-rank part)."""
    fresh, rest = [], []
    for i, m in enumerate(pop.members):
        own = m.seeds == member_seed(run_seed, round_idx, i)
        fresh.append(float(m.coeffs[own][0]))
        rest.append(float(np.linalg.norm(m.coeffs[~own])))
    return np.array(fresh), np.array(rest)


@pytest.mark.parametrize("sampler", ["normalised", "published"])
def test_local_members_isotropic_part_is_sigma_sqrt_lambda_once(sampler):
    """sigma = 1e-3, lambda = 0.5: the isotropic part is 7.07e-4 in both samplers (it once came out
    sigma * lambda = 5e-4). The published low-rank part is negligible (its eigenvalues are of order
    sigma^2); the normalised one carries the other half of E||a||^2 = sigma^2."""
    fake = Neutral()  # every candidate ties with the centre, so stage 1 commits and stage 2 starts
    cfg = config(stage2_rounds=1, local_members=200, local_sampler=sampler, local_sigma="best_sigma")
    op = CorpOperator(cfg, population_size=N, sigmas=[1e-3], seed=SEED, support_size=len(fake.lo["support"]))
    play(op, fake, rounds=1)
    assert op.stage == "stage2" and op.sigma == 1e-3 and op.lam == 0.5
    fresh, rest = _parts(op.propose(1), SEED, 1)
    assert np.allclose(fresh, 1e-3 * np.sqrt(0.5))
    if sampler == "published":
        assert rest.max() < 1e-2 * fresh[0]
    else:
        assert np.mean(rest**2) == pytest.approx(0.5 * 1e-6, rel=0.25)


def test_published_sampler_fits_the_centred_cloud_in_absolute_units():
    cloud = [Direction(np.array([1, 2]), np.array([1e-3, 0.0])), Direction(np.array([1, 2]), np.array([3e-3, 0.0]))]
    components, eig = fit_cloud(cloud, np.array([0.5, 0.5]), 8, "published")
    assert len(components) == 1 and eig[0] == pytest.approx(1e-6)  # variance of {1e-3, 3e-3}
    _, eig = fit_cloud(cloud, np.array([0.5, 0.5]), 8, "normalised")
    assert eig.sum() == pytest.approx(1.0)
    assert local_population(0, 1, 3, 1e-3, 0.5, [], np.zeros(0), np.arange(4), "published").fresh_coeff == (
        pytest.approx(1e-3 * np.sqrt(0.5))
    )  # published: sigma * sqrt(lambda) with or without components; normalised: sigma
    assert local_population(0, 1, 3, 1e-3, 0.5, [], np.zeros(0), np.arange(4)).fresh_coeff == 1e-3


def test_best_sigma_is_the_scale_whose_members_scored_best():
    assert best_sigma(np.array([1.0, 2.0, 3.0, 1.0, 2.0, 3.0]), np.array([0.1, 0.5, 0.2, 0.3, 0.1, 0.2])) == 2.0
    assert best_sigma(np.array([1.0, 2.0]), np.array([0.4, 0.4])) == 1.0  # ties: the first in member order
    fake = Planted()
    op = operator(config(stage2_rounds=1, local_sigma="best_sigma"), fake)
    op.sigmas = [0.5, 1.0, 1.5]
    pop = op.propose(0)
    scores = fake.score(pop)
    op.update(0, pop, scores, fake)
    assert op.sigma == best_sigma(pop.sigmas, scores.mean_rewards) and op.sigma in op.sigmas


def test_split_seed_follows_the_run_seed_unless_fixed():
    def halves(seed, **kw):
        op = CorpOperator(CorpConfig(**kw), 32, [1e-3], seed, 64)
        return op.selection.tolist(), op.gate.tolist()

    assert halves(5) == tuple(x.tolist() for x in split_support(64, 5 + 17))  # published: run seed + 17
    assert halves(0) != halves(1)
    assert halves(0, split_seed=3) == halves(1, split_seed=3)


def test_published_ess_schedule_is_geometric_and_asks_twice_the_target():
    assert [ess_target(k, 3, 16.0, 4.0, "published") for k in range(3)] == pytest.approx([16.0, 8.0, 4.0])
    assert [ess_target(k, 3, 16.0, 4.0) for k in range(3)] == pytest.approx([16.0, 10.0, 4.0])
    assert ess_asked(8.0, 5, "published") == 5 and ess_asked(8.0, 40, "published") == 16.0
    assert ess_asked(8.0, 5) == 8.0


def test_sign_p_value_is_the_exact_binomial_tail():
    assert sign_p_value(0, 0) == 1.0
    assert sign_p_value(2, 0) == 0.25 and sign_p_value(5, 0) == 1 / 32
    assert sign_p_value(9, 1) == pytest.approx(11 / 1024)
    assert sign_p_value(3, 3) == pytest.approx(42 / 64)


def test_pooled_sign_test_false_accepts_at_most_its_level():
    """Fake outcomes with churn but no gain: every example is a fix or a regression with probability 0.1
    each. The test passes a step without gain at most sign_level of the time, at every size."""
    rng = np.random.default_rng(0)
    for n in (16, 48, 150):
        centre = rng.random(n) < 0.5
        passes = 0
        for _ in range(4000):
            u = rng.random(n)
            flip = (u < 0.2) & np.where(centre, u < 0.1, u >= 0.1)  # P(fix) = P(regression) = 0.1 overall
            passes += pooled_sign_test(centre, centre ^ flip, 2.0, 0.05).passed
        assert passes / 4000 <= 0.05 + 0.01, n
    clean = np.zeros(48, dtype=bool)
    gained = clean.copy()
    gained[:5] = True  # 5 clean fixes: p = 1/32
    assert pooled_sign_test(clean, gained, 2.0, 0.05).passed and not pooled_sign_test(clean, gained, 2.0, 0.01).passed


def test_pooled_sign_accepts_what_the_two_step_gate_cannot():
    """One clean fix on a 16-example gate half never passes the two-step gate (its LCB is exactly 0),
    whatever the probe shows; pooled with four clean fixes on probe it is 5 of 5 (p = 1/32)."""
    sel_half, gate_half = np.arange(16), np.arange(16, 32)
    centre = Scores(np.zeros(32), np.zeros(32, dtype=bool))
    centre_probe = Scores(np.zeros(32), np.zeros(32, dtype=bool))
    prop = [Candidate(Direction.from_seed(1, 0.1), None, 1.0, 1.0)]
    calls = []

    def evaluate(direction, split, indices=None):
        calls.append((split, None if indices is None else len(indices)))
        fixed = {"probe": 4, "support": 1}[split] if len(direction) else 0
        correct = np.arange(32 if indices is None else len(indices)) < fixed
        return Scores(correct.astype(float), correct)

    two = select_and_gate(prop, centre, sel_half, gate_half, 2.0, 1.0, evaluate)
    assert two.gate_score > 0 and two.gate_lcb == 0.0 and not two.gated
    op = CorpOperator(config(stage2_test="pooled_sign"), N, [1.0], SEED, 32)
    op.gate, op.centre_probe = gate_half, centre_probe
    calls.clear()
    search, pooled = op._pooled(prop[0].direction, centre, CountedEvaluate(evaluate))
    assert (pooled.fixes, pooled.regressions, pooled.examples) == (5, 0, 48)
    assert pooled.p_value == 1 / 32 and pooled.passed and search.accepted
    assert calls.count(("support", 16)) == 1 and calls.count(("probe", None)) == 3  # the pick, once, on the gate half


def test_pooled_sign_rounds_decide_by_the_pooled_test():
    fake = Planted()
    op = operator(config(stage2_rounds=2, stage2_test="pooled_sign"), fake)
    _, updates = play(op, fake)
    rounds = [u.metrics for u in updates[1:]]
    assert rounds and all(m["stage2/gated"] == 1 and "stage2/gate_score" not in m for m in rounds)
    for m in rounds:
        assert m["stage2/accepted"] == int(m["stage2/pooled_score"] > 0 and m["stage2/pooled_p"] <= 0.05)
    assert any(m["stage2/accepted"] for m in rounds)


def test_corp_paper_uses_the_published_stage2_semantics():
    paper = OmegaConf.load(CONF / "corp_paper.yaml")
    assert (paper.gate_mode, paper.local_sigma, paper.local_sampler, paper.stage2_step_unit, paper.ess_schedule) == (
        "filter",
        "best_sigma",
        "published",
        "absolute",
        "published",
    )
    with pytest.raises(ValueError, match=r"consolidation.gate_mode=both: must be one of"):
        CorpConfig(gate_mode="both")
    with pytest.raises(ValueError, match=r"consolidation.local_sigma=sqrt_lambda: .*local_sampler=published"):
        CorpConfig(local_sigma="sqrt_lambda")
    with pytest.raises(ValueError, match=r"consolidation.stage2_test=pooled_sign: needs consolidation.gate_mode=best"):
        CorpConfig(stage2_test="pooled_sign", gate_mode="filter")
    with pytest.raises(ValueError, match=r"consolidation.sign_level=1.0: must be in \(0, 1\)"):
        CorpConfig(sign_level=1.0)


def test_experiment_paper_is_the_published_setting():
    cfg = validate(compose_config(["experiment=paper", "output_dir=/tmp/x"]))
    p, t, c = cfg.perturbation, cfg.task, cfg.consolidation
    assert (p.population_size, list(p.sigmas), p.noise_mode) == (500, [5e-4, 1e-3, 2e-3], "shared")
    assert (t.support_size, t.probe_size) == (500, 100)
    assert (c.local_members, c.stage2_rounds, c.ess_schedule, c.local_sampler) == (100, 3, "published", "published")


def test_power_script_decides_like_the_code():
    """benchmarks/stage2_power.py's pass regions are the code's decisions, for every outcome at n = 16 and 24."""
    spec = importlib.util.spec_from_file_location("stage2_power", ROOT / "benchmarks" / "stage2_power.py")
    power = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(power)
    tail = power.sign_tail(24)
    for n in (16, 24):
        f, r = power.outcomes(n)
        gate, probe, pooled = (
            power.gate_passes(f, r, n),
            power.probe_passes(f, r, n),
            power.pooled_passes(f, r, 0.05, tail),
        )
        for i in range(len(f)):
            centre = np.arange(n) >= f[i]  # the first f[i] examples wrong at the centre, the last r[i] right
            other = centre.copy()
            other[: f[i]] = True
            other[n - r[i] :] = False
            lcb = paired_lcb(centre, other, 1.0)[1]
            assert gate[i] == (constructive_scores(centre, other, 2.0) > 0 and lcb > 1e-12), (n, f[i], r[i])
            assert probe[i] == (lcb > 1e-12 and other.mean() >= centre.mean()), (n, f[i], r[i])
            assert pooled[i] == pooled_sign_test(centre, other, 2.0, 0.05).passed, (n, f[i], r[i])
