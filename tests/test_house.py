"""The run's plumbing: the score store keyed on examples, typed results, result-neutral keys, the
trainer built with ``_target_``, and one evaluation path on a tiny model."""

import json

import numpy as np
import pytest
from conftest import TINY_BUDGET, TINY_SIGMAS, compose_config, tiny_run

from corp.config import RESULT_NEUTRAL, ConfigError, result_neutral, to_plain, validate
from corp.migrate import main as migrate_main
from corp.migrate import run_splits
from corp.perturb.direction import Direction
from corp.results import Budget, Committed, Results, SplitResult, Throughput, Vote
from corp.scores import PopulationScores, Scores
from corp.startup import build_fabric, check_resume
from corp.store import ScoreStore, direction_key, save_scored, split_identity, store_context


# -- the score store keys on the examples --------------------------------------------------------
def test_migrate_rekeys_score_files_of_earlier_versions(tmp_path):
    """Scores saved under an earlier identity (the whole task config, ``auto`` as the dtype) are
    re-keyed once by ``corp.migrate``; a run then finds them under today's identity, and a file of
    other examples is left alone."""
    config = to_plain(
        validate(
            compose_config([f"output_dir={tmp_path}", "task.support_size=4", "task.probe_size=2", "task.test_size=2"])
        )
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config))
    splits = run_splits(config)
    older = {k: v for k, v in store_context(config, "auto", 64).items() if k != "version"}
    older["task"] = config["task"]
    centre, member = Direction.zero(), Direction.from_seed(4, 0.1)
    row = PopulationScores.stack(
        [Scores(np.array([1.0, 0.0, 1.0, 0.0]), np.array([True, False, True, False]), ["1", None, "1", None])]
    )
    save_scored(run / "populations" / "round_000.npz", split_identity(older, splits["support"]), centre, [member],
                row, "support")  # fmt: skip
    foreign = split_identity({**older, "batch_size": 8}, splits["support"])
    save_scored(run / "evals" / "other.npz", foreign, centre, [member], row, "support")

    now = ScoreStore(store_context(config, "float32", 64), splits)
    assert now.load(run) == 2 and now.get(now.identity("support"), centre, member) is None
    assert migrate_main([str(run)]) == 0
    assert migrate_main([str(run), "--check"]) == 0  # once is enough
    now = ScoreStore(store_context(config, "float32", 64), splits)
    now.load(run)
    assert now.get(now.identity("support"), centre, member).rewards.tolist() == [1.0, 0.0, 1.0, 0.0]
    with np.load(run / "evals" / "other.npz") as data:
        assert str(data["identity"]) == foreign


def test_a_larger_probe_split_reuses_every_support_member(tiny_model_dir, tmp_path):
    first = tiny_run(tiny_model_dir, tmp_path / "a", [TINY_SIGMAS, "export_model=false"])
    second = tiny_run(tiny_model_dir, tmp_path / "b",
                      [TINY_SIGMAS, "export_model=false", "task.probe_size=12", f"population.load={tmp_path / 'a'}"])  # fmt: skip
    assert first["budget"]["members_reused"] == 0
    # round 0's members are scored on the same support examples: all taken from the first run
    assert second["budget"]["members_reused"] >= 4
    assert second["support"]["base"] == first["support"]["base"]
    assert second["probe"]["n"] == 12


# -- typed results ----------------------------------------------------------------------------------
def test_results_round_trip_for_train_and_eval():
    split = SplitResult(0.25, 0.5, 0.3, 0.6, 8)
    vote = Vote({"1": 0.5, "3": 0.75}, [0.5, 0.25, 0.5], {"1": 1, "3": 3})
    train = Results("train", "arithmetic", "m", "float32", {"test": split}, 3.0, method="corp", seed=1,
                    budget=Budget(members_scored=4), committed=Committed(2, 0.5), rounds=[{"round": 0}],
                    vote=vote, throughput=Throughput(10, 20, 1.0, 10.0, 20.0, 0.5))  # fmt: skip
    assert Results.from_json(json.loads(json.dumps(train.to_json()))) == train
    assert train.to_json()["test"]["final"] == 0.5 and train.label == "corp"
    assert train.to_json()["test"]["vote"] == train.to_json()["vote"]["accuracy"] == vote.accuracy
    ev = Results("eval", "arithmetic", "m", "float32", {"test": split}, 2.0, evaluated="x/direction.json")
    data = ev.to_json()
    assert "budget" not in data and "rounds" not in data and Results.from_json(data).label == "eval"


# -- result-neutral keys ----------------------------------------------------------------------------
def test_result_neutral_keys_match_whole_keys_and_their_children_only():
    assert result_neutral("population.load") and result_neutral("trainer.devices") and result_neutral("+logger")
    assert not result_neutral("perturbation.population_size") and not result_neutral("seed")
    assert not result_neutral("loggers") and "seed" not in RESULT_NEUTRAL


def test_resume_accepts_a_change_of_result_neutral_keys_only(tmp_path):
    base = ["model.name_or_path=x", f"output_dir={tmp_path}", "logger=none"]
    saved = validate(compose_config(base))
    (tmp_path / "config.json").write_text(json.dumps(to_plain(saved)))
    assert check_resume(validate(compose_config([*base, "checkpoint_every_s=5", "trainer.num_threads=1"])), tmp_path)
    with pytest.raises(ConfigError, match=r"changed: seed\)"):
        check_resume(validate(compose_config([*base, "seed=3"])), tmp_path)


def test_an_older_run_folder_is_migrated_once_and_then_read_as_today(tmp_path):
    base = ["model.name_or_path=x", f"output_dir={tmp_path}", "logger=none"]
    older = to_plain(validate(compose_config(base)))
    del older["model"]["export_dtype"]  # saved before the key existed
    (tmp_path / "config.json").write_text(json.dumps(older))
    split = {"base": 0.25, "final": 0.5, "base_reward": 0.3, "final_reward": 0.6, "n": 8}
    budget = {"members_scored": 4, "forward_passes_per_test_example": 1}
    results = {"method": "corp", "task": "arithmetic", "model": "x", "seed": 0, "test": split, "budget": budget,
               "committed": {"components": 0, "coeff_norm": 0.0}, "rounds": [], "seconds": 1.0}  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(results))  # before mode, dtype and throughput
    with pytest.raises(ValueError, match="python -m corp.migrate"):
        Results.load(tmp_path)
    with pytest.raises(ConfigError, match=r"changed: model.export_dtype\) \(saved by an older version\?"):
        check_resume(validate(compose_config(base)), tmp_path)

    assert migrate_main([str(tmp_path), "--check"]) == 1
    assert migrate_main([str(tmp_path)]) == 0
    assert migrate_main([str(tmp_path), "--check"]) == 0  # once is enough
    assert check_resume(validate(compose_config(base)), tmp_path)
    res = Results.load(tmp_path)
    assert (res.mode, res.dtype, res.throughput, res.budget.members_scored) == ("train", "float32", None, 4)
    assert json.loads((tmp_path / "config.json").read_text())["model"]["export_dtype"] == "float32"


def test_store_keys_ignore_last_bit_differences_of_coefficients_only():
    a = Direction(np.array([1, 2]), np.array([0.00048367425301247774, 0.5]))
    b = Direction(np.array([1, 2]), np.array([0.00048367425301247790, 0.5]))
    c = Direction(np.array([1, 2]), np.array([0.000483674253, 0.5]))
    assert a != b and direction_key(a) == direction_key(b) and direction_key(a) != direction_key(c)


# -- the trainer ------------------------------------------------------------------------------------
def test_the_trainer_is_built_from_its_target_and_a_wrong_target_is_refused():
    fabric = build_fabric(validate(compose_config(["logger=none", "output_dir=x"])))
    assert type(fabric).__name__ == "Fabric" and fabric.world_size == 1
    with pytest.raises(ConfigError, match=r"trainer._target_='collections.OrderedDict'"):
        build_fabric(
            validate(compose_config(["logger=none", "output_dir=x", "trainer._target_=collections.OrderedDict"]))
        )


# -- one evaluation path ----------------------------------------------------------------------------
def test_the_operator_looking_at_the_base_on_probe_is_free_and_every_eval_is_saved(tiny_model_dir, tmp_path):
    res = tiny_run(tiny_model_dir, tmp_path, [TINY_SIGMAS, "export_model=false"], budget=TINY_BUDGET)
    b = res["budget"]
    # CoRP compares stage 1 with the centre on probe; the base on probe was scored before training
    candidates = list((tmp_path / "evals").glob("round_*/eval_*.npz"))
    assert b["candidate_evals"] == len(candidates) >= 1  # every charged candidate decoded and saved at once
    assert not (tmp_path / "evals" / "round_000" / "eval_000.npz").exists()  # the base on probe: a store hit
    evals = {p.name for p in (tmp_path / "evals").glob("*.npz")}
    assert {f"{w}_model_{s}.npz" for w in ("base", "final") for s in ("support", "probe", "test")} <= evals
    assert Results.load(tmp_path).to_json() == res


def test_eval_of_an_exported_model_goes_through_an_evaluator(tiny_results, tiny_model_dir, tmp_path):
    trained_dir, trained = tiny_results
    model = trained_dir / "model"  # fp32 export of the final centre: scores as the final model did
    args = [TINY_SIGMAS, "mode=eval", "eval.splits=[test]", f"eval.model={model}"]
    res = tiny_run(tiny_model_dir, tmp_path / "a", args)
    assert res["evaluated"] == str(model) and res["test"]["final"] == trained["test"]["final"]
    assert res["test"]["final_reward"] == trained["test"]["final_reward"]
    assert (tmp_path / "a" / "evals" / "evaluated_test.npz").exists()  # saved, as every score is
    assert res["throughput"]["examples_decoded"] == 2 * 8  # the base and the model, once each
    again = tiny_run(tiny_model_dir, tmp_path / "b", [*args, f"population.load={tmp_path / 'a'}"])
    assert again["test"] == res["test"] and again["throughput"]["examples_decoded"] == 0  # found in the store
