"""Racing (corp/racing.py): the schedule and its rules on synthetic reward matrices, the config's
refusals, and on the tiny model: raced and full runs agree bitwise where both decoded, and a full
run after a raced one decodes only what the race left out."""

import json
import subprocess
import sys

import numpy as np
import pytest

from corp.config import ConfigError, validate
from corp.consolidate.base import rank_members
from corp.consolidate.stage1 import elite_indices, elite_reach
from corp.perturb.direction import Direction
from corp.racing import Race, RacingConfig, decision_points, sign_test, survivors
from corp.scores import PopulationScores, Scores
from corp.store import ScoreStore, save_scored
from corp.tasks.base import Example
from tests.conftest import ROOT, TINY_SIGMAS, compose_config, tiny_run, vowel_task


def test_decision_points_grow_from_the_first_block_and_end_at_every_example():
    assert decision_points(RacingConfig(rule="halving", first_block=8), 32) == [8, 16, 32]
    assert decision_points(RacingConfig(rule="halving", first_block=8, growth=3.0), 128) == [8, 24, 72, 128]
    assert decision_points(RacingConfig(rule="halving", first_block=40), 32) == [32]
    assert decision_points(RacingConfig(), 32) == [32]  # rule none: one block


def test_sign_test_counts_fixes_against_regressions():
    rows = np.array([[1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=float)
    p = sign_test(rows)
    assert p[0, 1] == pytest.approx(1 / 32)  # 5 fixes, 0 regressions
    assert p[1, 0] == 1.0
    assert p[0, 2] == 1.0  # identical rows: nothing to tell them apart


def test_halving_keeps_the_better_half_and_never_fewer_than_kept():
    rewards = np.array([[1, 1], [0, 0], [1, 0], [0, 1], [0, 0], [1, 1]], dtype=float)
    stay = survivors(RacingConfig(rule="halving"), rewards, keep=1)
    assert stay.tolist() == [True, False, True, False, False, True]  # ties at 0.5 go to the lower index
    assert survivors(RacingConfig(rule="halving"), rewards, keep=5).sum() == 5


def test_paired_drops_a_member_only_when_keep_members_beat_it():
    rng = np.random.default_rng(0)
    strong = (rng.random((3, 16)) < 0.9).astype(float)
    weak = np.zeros((1, 16))
    rewards = np.vstack([strong, weak])
    cfg = RacingConfig(rule="paired", confidence=0.99)
    assert survivors(cfg, rewards, keep=3).tolist() == [True, True, True, False]  # beaten by all three
    assert survivors(cfg, rewards, keep=4).all()  # keeps four: nothing may go
    close = (rng.random((6, 16)) < 0.5).astype(float)
    assert survivors(cfg, close, keep=1).sum() >= 2  # coin flips on 16 examples: no confident beats


def test_paired_never_falls_below_the_floor():
    rewards = np.array([[1] * 12, [1] * 11 + [0], [0] * 12, [0] * 12], dtype=float)
    stay = survivors(RacingConfig(rule="paired", confidence=0.9, floor=3), rewards, keep=1)
    assert stay.sum() == 3 and stay[:2].all()


def test_a_race_records_what_it_read_and_the_survivors_of_each_stage():
    rewards = np.tile(np.linspace(0, 1, 8)[:, None], (1, 32)).round()
    race = Race(RacingConfig(rule="halving", first_block=8), 8, 32, keep=2)
    for upto in race.points:
        race.decide(upto, rewards)
    assert [s["scored"] for s in race.stages] == [8, 4, 2] and race.alive.sum() == 2
    assert race.decoded == 8 * 8 + 4 * 8 + 2 * 16
    metrics, details = race.observations()
    assert metrics["racing/examples_saved"] == 8 * 32 - race.decoded and details["racing/stages"] == race.stages
    assert Race(RacingConfig(rule="halving"), 8, 32, keep=None).points == [32]  # the operator reads every member


def test_raced_out_members_rank_last_and_stay_out_of_every_elite():
    rewards = np.array([[1, 1, 0, 1], [1, np.nan, np.nan, np.nan], [0, 1, 0, 0], [1, 1, np.nan, np.nan],
                        [0, 0, 1, 1]], dtype=float)  # fmt: skip
    scores = PopulationScores(rewards, np.nan_to_num(rewards).astype(bool))
    assert scores.mask.all(axis=1).tolist() == [True, False, True, False, True]
    assert scores.mean_rewards.tolist() == [0.75, 1.0, 0.25, 1.0, 0.5]  # over what was decoded
    assert scores.accuracies.tolist() == [0.75, 1.0, 0.25, 1.0, 0.5]
    assert rank_members(scores.selection_rewards).tolist()[:3] == [0, 4, 2]
    # CoRP's reach: the survivors fill every quantile position its grid interpolates
    assert elite_reach(32, [0.5, 0.66]) == 17 and elite_reach(8, [0.5]) == 5
    full = np.arange(32, dtype=float)
    raced = np.where(full >= 32 - elite_reach(32, [0.5, 0.66]), full, -np.inf)
    for q in (0.5, 0.66):
        assert elite_indices(raced, q).tolist() == elite_indices(full, q).tolist()


def test_ranks_decoding_blocks_of_one_member_merge_entry_by_entry():
    left, right = PopulationScores.empty(2, 4), PopulationScores.empty(2, 4)
    left.set(0, Scores(np.array([1.0, 0.0]), np.array([True, False]), ["a", "b"]), np.array([0, 1]))
    right.set(0, Scores(np.array([0.5, 1.0]), np.array([False, True]), ["c", "d"]), np.array([2, 3]))
    right.set(1, Scores(np.array([0.25]), np.array([False]), ["e"]), np.array([0]))
    merged = PopulationScores.merge([left, right])
    assert merged.rewards[0].tolist() == [1.0, 0.0, 0.5, 1.0] and merged.answers[0] == ["a", "b", "c", "d"]
    assert merged.mask[1].tolist() == [True, False, False, False] and merged.answers[1] == ["e", None, None, None]


def test_a_partial_row_is_saved_and_loaded_as_partial_and_ranks_last(tmp_path):
    splits = {"support": [Example(p, "1") for p in "abcd"]}
    store, centre = ScoreStore({"task": {}}, splits), Direction.zero()
    members = [Direction.from_seed(s, 0.1) for s in (1, 2, 3)]
    scores = PopulationScores.empty(3, 4)
    scores.set(0, Scores(np.ones(4), np.ones(4, dtype=bool), ["1"] * 4))
    scores.set(1, Scores(np.array([0.0, 1.0]), np.array([False, True]), ["0", "1"]), np.array([0, 1]))
    save_scored(tmp_path / "round_000.npz", store.identity("support"), centre, members, scores, "support")
    assert store.load(tmp_path) == 2  # member 2 holds nothing: no row
    partial = store.get(store.identity("support"), centre, members[1])
    assert np.array_equal(partial.rewards, [0.0, 1.0, np.nan, np.nan], equal_nan=True)
    reread = PopulationScores.stack([partial])
    assert reread.mask.tolist() == [[True, True, False, False]] and reread.selection_rewards[0] == -np.inf


def raced_scores(full: np.ndarray, reach: list[int]) -> PopulationScores:
    """``full`` with each member's row cut after ``reach[i]`` examples, as a race leaves it."""
    rewards = full.astype(float).copy()
    for i, t in enumerate(reach):
        rewards[i, t:] = np.nan
    return PopulationScores(rewards, np.nan_to_num(rewards).astype(bool), [["x"] * full.shape[1] for _ in full])


def test_operators_choose_among_the_members_that_finished_the_race():
    from corp.consolidate.corp import CorpConfig, CorpOperator
    from corp.consolidate.randopt import RandOptConfig, RandOptOperator
    from corp.consolidate.soup import SoupConfig, SoupOperator

    full = np.array([[1, 1, 0, 0, 0, 0, 0, 0]] * 2 + [[1, 0, 1, 0, 1, 0, 1, 0]] * 6)
    reach = [2, 2, 8, 8, 8, 8, 8, 8]  # members 0 and 1 raced out after 2 examples, both solved
    randopt = RandOptOperator(RandOptConfig(vote_ks=[1, 2]), 8, [0.1], 0)
    pop = randopt.propose(0)
    assert pop.keep == 2
    randopt.update(0, pop, raced_scores(full, reach), lambda *a: None)
    assert randopt.ranking[:2].tolist() == [2, 3] and set(randopt.ranking[-2:]) == {0, 1}

    probe = Scores(np.ones(4), np.ones(4, dtype=bool))
    soup = SoupOperator(SoupConfig(top_k=3), 8, [0.1], 0)
    upd = soup.update(0, soup.propose(0), raced_scores(full, reach), lambda *a: probe)
    assert [row["member"] for row in upd.details["soup/top_members"]] == [2, 3, 4]

    corp = CorpOperator(CorpConfig(quantiles=[0.5], stage2_rounds=0), 8, [0.1], 0, 8)
    pop = corp.propose(0)
    assert pop.keep == elite_reach(8, [0.5]) == 5
    upd = corp.update(0, pop, raced_scores(full, [2, 2, 2, 8, 8, 8, 8, 8]), lambda *a: probe)
    elite = {row["member"] for row in upd.details["stage1/elite_members"]}
    assert elite == {3, 4, 5, 6, 7}  # every finisher, no raced-out member


@pytest.mark.parametrize(("override", "rule"), [
    ([], "none"),  # CoRP
    (["consolidation=randopt"], "paired"),
    (["consolidation=randopt_10x"], "paired"),
    (["consolidation=soup"], "paired"),
    (["consolidation=es"], "none"),
    (["consolidation=randopt", "racing=none"], "none"),  # the command line wins over the operator's choice
    (["experiment=compare", "consolidation=randopt_10x", "hydra.mode=RUN"], "none"),  # the matched comparison
    (["experiment=compare", "consolidation=soup", "hydra.mode=RUN", "racing=halving"], "halving"),
])  # fmt: skip
def test_randopt_and_soup_race_by_default_and_everything_else_scores_in_full(override, rule):
    cfg = compose_config(override)
    assert cfg.racing.rule == rule
    if rule == "paired":
        assert cfg.racing.confidence == 0.8 and cfg.racing.first_block == 8  # the schedule BENCHMARKS §3 chose


@pytest.mark.parametrize(("override", "named"), [
    (["racing=halving", "consolidation=es"], "racing=halving: consolidation=es reads every member"),
    (["racing.rule=fast"], "racing.rule='fast'"),
    (["racing=paired", "racing.confidence=1.0"], "racing.confidence=1.0"),
])  # fmt: skip
def test_bad_racing_configs_are_refused_naming_the_key(override, named, tmp_path):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        validate(compose_config([f"output_dir={tmp_path}", *override]))


RANDOPT = ["consolidation=randopt", "consolidation.vote_ks=[1,2]", "perturbation.population_size=8",
           "task.support_size=8", "task.probe_size=2", "task.test_size=2", TINY_SIGMAS, "export_model=false",
           "trainer.num_threads=1"]  # fmt: skip
RACE = ["racing=halving", "racing.first_block=2"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> list[str]:
    """A task on which the tiny model's members get different, graded rewards."""
    return [*vowel_task(tmp_path_factory.mktemp("data"), 20), *RANDOPT]


def _population(run) -> dict:
    with np.load(run / "populations" / "round_000.npz") as data:
        return {"rewards": data["rewards"], "answers": json.loads(str(data["answers"]))}


@pytest.mark.slow
def test_raced_and_full_runs_agree_and_a_full_run_decodes_only_what_the_race_left_out(tiny_model_dir, graded,
                                                                                      tmp_path):  # fmt: skip
    raced = tiny_run(tiny_model_dir, tmp_path / "raced", [*graded, *RACE], budget=[])
    full = tiny_run(tiny_model_dir, tmp_path / "full", graded, budget=[])
    r, f = _population(tmp_path / "raced"), _population(tmp_path / "full")
    decoded = ~np.isnan(r["rewards"])
    assert r["rewards"].shape == f["rewards"].shape == (8, 8)
    assert 0 < decoded.sum() < decoded.size and decoded[:, :2].all()  # everyone on the first block, not all on all
    assert len(np.unique(f["rewards"])) > 2  # graded rewards that tell members apart
    assert np.array_equal(r["rewards"][decoded], f["rewards"][decoded])  # bitwise
    assert all(r["answers"][i][k] == f["answers"][i][k] for i, k in zip(*np.nonzero(decoded)))
    assert raced["budget"]["example_evals"] == decoded.sum() < full["budget"]["example_evals"]
    assert raced["rounds"][0]["racing/examples_saved"] == decoded.size - decoded.sum()
    assert (tmp_path / "raced" / "plots" / "racing_survivors.png").exists()
    assert not (tmp_path / "full" / "plots" / "racing_survivors.png").exists()

    rerun = tiny_run(tiny_model_dir, tmp_path / "rerun", [*graded, f"population.load={tmp_path / 'raced'}"],
                     budget=[])  # fmt: skip
    b = rerun["budget"]
    assert b["example_evals"] == decoded.size and b["example_evals_reused"] == decoded.sum()  # decoded: the rest
    assert np.array_equal(_population(tmp_path / "rerun")["rewards"], f["rewards"])
    direction = [json.loads((tmp_path / run / "direction.json").read_text())["direction"] for run in ("rerun", "full")]
    assert direction[0] == direction[1]  # the same member committed as by the full run


@pytest.mark.slow
def test_two_ranks_race_as_one(tiny_model_dir, graded, tmp_path):
    """The ranks share each block's members and all-gather entry by entry: the same partial rows,
    the same budget and the same committed member as one process."""
    one = tiny_run(tiny_model_dir, tmp_path / "one", [*graded, *RACE], budget=[])
    cmd = [sys.executable, str(ROOT / "train.py"), f"model.name_or_path={tiny_model_dir}", "logger=csv",
           f"hydra.run.dir={tmp_path / 'two'}", *graded, *RACE, "trainer.devices=2", "trainer.strategy=ddp"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r1, r2 = _population(tmp_path / "one")["rewards"], _population(tmp_path / "two")["rewards"]
    assert np.isnan(r1).any() and np.array_equal(r1, r2, equal_nan=True)
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["budget"]["example_evals"] == one["budget"]["example_evals"] == (~np.isnan(r1)).sum()
    direction = [json.loads((tmp_path / run / "direction.json").read_text())["direction"] for run in ("one", "two")]
    assert direction[0] == direction[1]
