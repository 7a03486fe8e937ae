"""RandOpt, ES and soup against fake evaluators, the vote rule, and the score store."""

from __future__ import annotations

import numpy as np
import pytest

from corp.config import validate
from corp.consolidate import build_operator
from corp.consolidate.base import isotropic_population, member_seed, rank_members
from corp.consolidate.es import ESConfig, ESOperator, es_step
from corp.consolidate.randopt import RandOptConfig, RandOptOperator
from corp.consolidate.soup import SoupConfig, SoupOperator, soup_direction
from corp.consolidate.vote import vote_accuracy, vote_winners
from corp.perturb.direction import Direction
from corp.scores import PopulationScores, Scores
from corp.store import ScoreStore, save_scored
from corp.tasks.base import Example
from tests.conftest import compose_config

SEED = 3


def scored(rewards: list[float], n_examples: int = 4) -> PopulationScores:
    """Member i solves the first round(rewards[i] * n_examples) examples."""
    r = np.array(rewards, dtype=np.float64)
    correct = np.arange(n_examples)[None, :] < np.round(r * n_examples)[:, None]
    return PopulationScores(correct.astype(np.float64), correct, [["1"] * n_examples for _ in rewards])


def no_evaluate(direction, split, indices=None):
    raise AssertionError("this operator must not evaluate candidates")


# -- voting ------------------------------------------------------------------------------------
def test_vote_takes_the_most_common_answer():
    answers = [["7", "1"], ["8", "2"], ["8", "2"]]
    assert vote_winners(answers) == [1, 1]


def test_vote_tie_goes_to_the_higher_ranked_member():
    # "9" and "8" both have two votes; member 1 (rank 2) gave "9" before anyone gave "8"
    answers = [["5"], ["9"], ["8"], ["8"], ["9"]]
    assert vote_winners(answers) == [1]


def test_vote_ignores_missing_and_blank_answers():
    answers = [[None, None], ["  ", None], ["4", None], [None, None]]
    assert vote_winners(answers) == [2, None]


def test_vote_answers_are_compared_after_stripping():
    assert vote_winners([["3"], [" 4"], ["4 "]]) == [1]


def test_vote_accuracy_judges_the_winning_members_completion():
    answers = [["1", "x"], ["2", "y"], ["2", "y"]]
    correct = np.array([[True, False], [False, True], [False, False]])
    assert vote_accuracy(answers, correct, 1) == 0.5  # member 0 alone: first right, second wrong
    assert vote_accuracy(answers, correct, 3) == 0.5  # "2" wins (member 1: wrong), "y" wins (member 1: right)
    with pytest.raises(ValueError, match="k=4"):
        vote_accuracy(answers, correct, 4)


def test_rank_members_breaks_ties_by_index():
    assert rank_members(np.array([0.5, 0.9, 0.5, 0.9])).tolist() == [1, 3, 0, 2]


# -- RandOpt -----------------------------------------------------------------------------------
def test_randopt_scores_multiplier_times_n_and_commits_the_best_member():
    op = RandOptOperator(RandOptConfig(population_multiplier=3, vote_ks=[1, 2]), 4, [0.1, 0.2], SEED)
    pop = op.propose(0)
    assert len(pop) == 12 and op.propose(1) is None
    # the first 4 members are exactly the population of N = 4
    assert [int(s) for s in pop.seeds[:4]] == [member_seed(SEED, 0, i) for i in range(4)]
    rewards = [0.25] * 12
    rewards[5], rewards[9] = 1.0, 0.75
    upd = op.update(0, pop, scored(rewards), no_evaluate)
    assert upd.done and upd.step == pop.members[5]
    ensemble = op.test_ensemble()
    assert ensemble.members == [pop.members[5], pop.members[9]] and ensemble.ks == [1, 2]


def test_randopt_refuses_a_vote_larger_than_its_population():
    with pytest.raises(ValueError, match="consolidation.vote_ks"):
        RandOptOperator(RandOptConfig(vote_ks=[1, 5]), 4, [0.1], SEED)
    with pytest.raises(ValueError, match="consolidation.vote_ks"):
        RandOptConfig(vote_ks=[0])


# -- ES ----------------------------------------------------------------------------------------
def test_es_step_is_alpha_over_n_times_zscored_rewards():
    pop = isotropic_population(SEED, 0, 4, [0.3])
    rewards = np.array([0.0, 0.5, 0.5, 1.0])
    step = es_step(pop, rewards, lr=0.1)
    z = (rewards - rewards.mean()) / rewards.std()
    coeff = dict(zip(step.seeds.tolist(), step.coeffs.tolist()))
    assert np.allclose([coeff.get(s, 0.0) for s in pop.seeds.tolist()], 0.1 / 4 * z)  # zero z: pruned
    assert abs(step.coeffs.sum()) < 1e-12  # z-scores sum to zero


def test_antithetic_members_are_mirrored_pairs_of_the_plain_population():
    plain = isotropic_population(SEED, 0, 6, [1e-3, 2e-3])
    pop = isotropic_population(SEED, 0, 7, [1e-3, 2e-3], antithetic=True)
    assert list(pop.seeds) == [plain.seeds[j] for j in (0, 0, 1, 1, 2, 2, 3)]
    assert list(pop.sigmas) == [plain.sigmas[j] for j in (0, 0, 1, 1, 2, 2, 3)]
    for j in range(3):  # + member = the plain member j, - member its mirror: (seed, +-sigma) each
        assert pop.members[2 * j] == plain.members[j] and pop.members[2 * j + 1] == plain.members[j] * -1.0
    assert pop.members[6] == plain.members[3]  # an odd size ends with an unpaired + member
    smaller = isotropic_population(SEED, 0, 4, [1e-3, 2e-3], antithetic=True)
    assert smaller.members == pop.members[:4]  # a population of N is the first N of a larger one


def test_es_step_of_a_mirrored_pair_is_the_reward_difference():
    pop = isotropic_population(SEED, 0, 4, [0.01], antithetic=True)
    rewards = np.array([1.0, 0.0, 0.5, 0.5])  # pair 0: + beats -; pair 1: a tie, no signal
    step = es_step(pop, rewards, lr=0.1)
    z = (rewards - rewards.mean()) / rewards.std()
    assert list(step.seeds) == [pop.seeds[0]]
    assert step.coeffs[0] == pytest.approx(0.1 / 4 * (z[0] - z[1]))


def test_perturbation_antithetic_reaches_every_isotropic_population():
    for name in ("es", "randopt", "soup", "corp"):
        cfg = validate(compose_config([f"consolidation={name}", "perturbation.antithetic=true", "output_dir=/tmp/x"]))
        pop = build_operator(cfg).propose(0)
        assert pop.seeds[0] == pop.seeds[1] and pop.members[1] == pop.members[0] * -1.0, name
    cfg = validate(compose_config(["consolidation=es", "output_dir=/tmp/x"]))
    assert len(set(build_operator(cfg).propose(0).seeds)) == cfg.perturbation.population_size  # off by default


def test_es_with_constant_rewards_takes_no_step_and_no_nan():
    op = ESOperator(ESConfig(rounds=2), 4, SEED)
    pop = op.propose(0)
    upd = op.update(0, pop, scored([0.5] * 4), no_evaluate)
    assert upd.step is None and not upd.done and upd.metrics["es/flat_rewards"] == 1
    assert all(np.isfinite(v) for v in upd.metrics.values())


def test_es_runs_its_rounds_with_fresh_members_at_its_own_sigma():
    op = ESOperator(ESConfig(rounds=2, sigma=0.01, population_size=6), 4, SEED)
    first, second = op.propose(0), op.propose(1)
    assert len(first) == 6 and set(first.sigmas) == {0.01}
    assert not set(first.seeds) & set(second.seeds)
    assert op.update(1, second, scored([0.0, 1.0, 0.5, 0.5, 0.25, 0.75]), no_evaluate).done
    assert op.propose(2) is None


# -- soup --------------------------------------------------------------------------------------
class ScaleOptimum:
    """Probe accuracy peaks when the step has length ``best`` (in coefficient units)."""

    def __init__(self, best: float, centre_acc: float = 0.5) -> None:
        self.best, self.centre_acc, self.calls = best, centre_acc, []

    def __call__(self, direction: Direction, split: str, indices=None) -> Scores:
        self.calls.append(direction)
        acc = self.centre_acc if len(direction) == 0 else max(0.0, 1.0 - abs(direction.norm() - self.best))
        correct = np.arange(100) < round(acc * 100)
        return Scores(correct.astype(float), correct)


def test_soup_averages_the_top_k_members():
    members = [Direction.from_seed(s, 0.1) for s in (1, 2, 3)]
    assert soup_direction(members) == Direction(np.array([1, 2, 3]), np.full(3, 0.1 / 3))


def test_soup_picks_the_scale_on_probe_and_keeps_the_top_k_direction():
    cfg = SoupConfig(top_k=2, scales=[0.5, 1.0, 2.0])
    op = SoupOperator(cfg, 6, [0.1], SEED)
    pop = op.propose(0)
    upd = op.update(0, pop, scored([0.1, 0.9, 0.2, 0.8, 0.3, 0.0]), ScaleOptimum(best=0.1))
    mean = soup_direction([pop.members[1], pop.members[3]])
    assert set(upd.step.seeds) == {pop.seeds[1], pop.seeds[3]}
    assert upd.step.cosine(mean) == pytest.approx(1.0)
    assert upd.step.norm() == pytest.approx(0.1)  # s = 1 member length = sigma
    assert upd.metrics["soup/best_s"] == 1.0


def test_soup_keeps_the_centre_when_every_candidate_is_worse():
    op = SoupOperator(SoupConfig(top_k=2), 4, [0.1], SEED)
    pop = op.propose(0)
    upd = op.update(0, pop, scored([0.1, 0.9, 0.2, 0.8]), ScaleOptimum(best=50.0, centre_acc=0.9))
    assert upd.step is None and upd.metrics["soup/committed"] == 0


def test_soup_refuses_top_k_above_the_population():
    with pytest.raises(ValueError, match="consolidation.top_k"):
        SoupOperator(SoupConfig(top_k=9), 4, [0.1], SEED)


# -- the score store ---------------------------------------------------------------------------
def make_store(context=None, prompts=("a", "b", "c")) -> ScoreStore:
    splits = {"support": [Example(p, "1") for p in prompts]}
    return ScoreStore(context or {"model": "m"}, splits)


def test_store_identity_depends_on_context_examples_and_subset():
    store = make_store()
    assert store.identity("support") == make_store().identity("support")
    assert store.identity("support") != make_store({"model": "other"}).identity("support")
    assert store.identity("support") != make_store(prompts=("a", "b", "d")).identity("support")
    assert store.identity("support", [0, 1]) != store.identity("support")


def test_store_round_trips_through_a_saved_file(tmp_path):
    store = make_store()
    ident, centre = store.identity("support"), Direction.from_seed(5, 0.2)
    members = [Direction.from_seed(s, 0.1) for s in (1, 2)]
    rows = [Scores(np.array([1.0, 0.0, 1.0]), np.array([True, False, True]), ["1", None, "1"]) for _ in members]
    save_scored(
        tmp_path / "run" / "populations" / "round_000.npz",
        ident,
        centre,
        members,
        PopulationScores.stack(rows),
        "support",
    )
    (tmp_path / "run" / "populations" / "torn.tmp.npz").write_bytes(b"partial")
    fresh = make_store()
    assert fresh.load(tmp_path) == 2
    hit = fresh.get(ident, centre, members[1])
    assert hit.answers == ["1", None, "1"] and hit.correct.tolist() == [True, False, True]
    assert fresh.get(ident, Direction.zero(), members[1]) is None  # another centre is another model
    assert fresh.get(ident, centre, Direction.from_seed(3, 0.1)) is None
