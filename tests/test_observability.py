"""What a run shows: per-round metrics and tables in W&B (read back from an offline run file),
rounds.jsonl, the plots, the throughput block, and the operator's prefetch hints reaching the
parameter space (fewer noise draws, the same run).

Runs use the tiny random model on the custom vowel-share task of tests/test_resilience.py,
whose rewards differ between members, so every table and plot has real content.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image

from corp.observe.logged import headline
from corp.observe.rounds import read_rounds
from corp.observe.wandb_files import records as wandb_records
from corp.perturb.space import ParameterSpace
from corp.results import Results
from tests.conftest import TINY_BUDGET, compose_config, tiny_run
from tests.test_resilience import EXTRA, task_args  # noqa: F401 - task_args is a fixture

COMMON = ["perturbation.population_size=4", "task.support_size=8", "task.probe_size=8", "task.test_size=8"]
CORP_PLOTS = ["population_rewards", "reward_vs_sigma", "population_by_round", "elite_weights", "elite_spectrum",
              "stage2_trajectory"]  # fmt: skip


@pytest.fixture(scope="module")
def wandb_run(tiny_model_dir, task_args, tmp_path_factory):  # noqa: F811
    """A CoRP run (stage 1 + one stage-2 round) logged to W&B offline, without an account."""
    from corp.run import run

    out = tmp_path_factory.mktemp("wandb-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_DIR", str(out / "wandb_dir"))
        mp.setenv("WANDB_SILENT", "true")
        mp.delenv("WANDB_API_KEY", raising=False)
        overrides = [f"model.name_or_path={tiny_model_dir}", "logger=wandb", f"output_dir={out}", "log_samples=5",
                     *TINY_BUDGET, *task_args, *EXTRA]  # fmt: skip
        results = run(compose_config(overrides)).to_json()
    (run_file,) = out.glob("wandb/offline-run-*/run-*.wandb")  # what `wandb sync` uploads later
    return out, results, run_file


def read_back(run_file: Path) -> tuple[list[dict], dict[int, dict], dict, list]:
    """A .wandb file's history: the per-point rows (in order), the per-round values merged by round;
    its final summary; and every history row in order, as (kind: "point" or "round", its round, its keys)."""
    points: list[dict] = []
    rounds: dict[int, dict] = defaultdict(dict)
    summary: dict = {}
    order = []
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = unflatten(record.history.item)
            kind = "point" if "point" in row else "round"
            if kind == "point":
                points.append(row)
            else:
                rounds[int(row["round"])].update(row)
            order.append((kind, int(row["round"]), set(row)))
        elif kind == "summary":
            summary.update(unflatten(record.summary.update))
    return points, rounds, summary, order


def step_metrics(run_file: Path) -> dict[str, str]:
    """define_metric records: metric name or glob -> its x-axis."""
    return {r.metric.name or r.metric.glob_name: r.metric.step_metric for r in wandb_records(run_file)
            if r.WhichOneof("record_type") == "metric"}  # fmt: skip


def unflatten(items) -> dict:
    """Record items as {logged key: value}; a media value arrives as items keyed [key, field]."""
    out: dict = {}
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = json.loads(item.value_json)
    return out


def media(run_file: Path, value: dict) -> Path:
    """The file a logged table or image points at, inside the offline run folder."""
    return run_file.parent / "files" / value["path"]


@pytest.mark.slow
def test_wandb_logs_every_scored_point_live_from_the_first_member(wandb_run):
    _, results, run_file = wandb_run
    points, _, _, order = read_back(run_file)
    budget = results["budget"]
    members = [p for p in points if "member/reward" in p]
    candidates = [p for p in points if "candidate/reward" in p]
    assert len(members) == budget["members_scored"] and len(candidates) == budget["candidate_evals"]
    assert [p["point"] for p in points] == list(range(1, len(points) + 1))
    # live: round 0's members are on the chart before the row that ends round 0 (its histogram) is logged
    end_of_round_0 = next(i for i, (kind, rnd, keys) in enumerate(order)
                          if kind == "round" and rnd == 0 and "population/reward_hist" in keys)  # fmt: skip
    members_of_round_0 = [i for i, (kind, rnd, keys) in enumerate(order)
                          if kind == "point" and rnd == 0 and "member/reward" in keys]  # fmt: skip
    assert len(members_of_round_0) == 4 and max(members_of_round_0) < end_of_round_0
    assert [p["round"] for p in members[:4]] == [0, 0, 0, 0] and {m["member/sigma"] for m in members[:4]} == {0.5, 1.0}
    assert all(0 <= p["member/accuracy"] <= 1 for p in members)
    assert points[-1]["example_evals"] == budget["example_evals"]
    axes = step_metrics(run_file)
    assert axes["member/*"] == axes["candidate/*"] == axes["example_evals"] == "point"
    assert axes["population/reward_mean"] == "round"


@pytest.mark.slow
def test_wandb_rounds_hold_recurring_values_and_tables_single_ones_go_to_one_table(wandb_run):
    _, results, run_file = wandb_run
    _, rounds, summary, _ = read_back(run_file)
    history = results["rounds"]
    assert len(history) == 2 and "stage1/probe_acc" in history[0] and "stage2/gated" in history[1]
    for r in history:
        logged = rounds[r["round"]]
        for key in ("population/reward_mean", "population/reward_std", "budget/noise_draws", "round/committed",
                    "throughput/examples_per_s"):  # fmt: skip
            assert isinstance(logged[key], (int, float)), key
        assert logged["population/reward_hist"]["_type"] == "histogram"
        assert logged["samples/round_best_member"]["_type"] == "table-file"
    once = [k for k in history[0] if k.startswith("stage1/")]  # stage 1 happens in round 0 only
    assert once
    logged = {k: v for row in rounds.values() for k, v in row.items()}
    table = json.loads(media(run_file, logged["rounds/metrics"]).read_text())
    by_round = {row[table["columns"].index("round")]: dict(zip(table["columns"], row)) for row in table["data"]}
    assert sorted(by_round) == [r["round"] for r in history]
    for key in once:  # not a one-point chart, not in the summary: a cell of the rounds table
        assert key not in rounds[0] and key not in summary, key
        assert by_round[0][key] == pytest.approx(float(history[0][key])), key
    assert by_round[1]["stage2/gated"] == history[1]["stage2/gated"]
    stage1 = rounds[0]
    candidates = json.loads(media(run_file, stage1["stage1/candidate_scores"]).read_text())
    assert {"q", "beta", "scale", "probe_acc"} <= set(candidates["columns"])
    assert len(candidates["data"]) == history[0]["stage1/candidates"]
    best = json.loads(media(run_file, stage1["samples/round_best_member"]).read_text())
    assert {"member", "sigma", "prompt", "completion", "reward"} <= set(best["columns"]) and len(best["data"]) == 5


@pytest.mark.slow
def test_wandb_summary_is_the_headline_budget_and_throughput(wandb_run):
    out, results, run_file = wandb_run
    _, rounds, summary, _ = read_back(run_file)
    assert summary["test/accuracy"] == results["test"]["final"]
    assert summary["test/base_accuracy"] == results["test"]["base"]
    assert summary["test/gain"] == pytest.approx(results["test"]["final"] - results["test"]["base"])
    assert summary["probe/accuracy"] == results["probe"]["final"]
    assert summary["budget/members_scored"] == results["budget"]["members_scored"]
    assert summary["throughput/examples_decoded"] == results["throughput"]["examples_decoded"]
    assert summary["test/accuracy_se"] == results["test"]["se"]["final"]
    assert summary["test/gain_se"] == results["test"]["se"]["gain"]
    scalars = {k for k, v in summary.items() if not k.startswith("_") and not isinstance(v, dict)}  # not media
    assert scalars == set(headline(Results.from_json(results)))  # the headline, no single-round operator values
    logged = {k: v for row in rounds.values() for k, v in row.items()}
    start = json.loads(media(run_file, logged["samples/start"]).read_text())
    end = json.loads(media(run_file, logged["samples/end"]).read_text())
    assert "final_completion" not in start["columns"] and len(start["data"]) == len(end["data"]) == 5
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    samples = [s for s in samples if s["split"] == "test"]
    col = end["columns"].index("final_completion")
    assert [row[col] for row in end["data"]] == [s["final_completion"] for s in samples[:5]]
    for name in CORP_PLOTS:
        image = logged[f"plots/{name}"]
        assert image["_type"] == "image-file" and media(run_file, image).stat().st_size > 10_000, name
    saved = json.loads((out / "wandb_run.json").read_text())
    (run,) = [r.run for r in wandb_records(run_file) if r.WhichOneof("record_type") == "run"]
    assert saved["id"] == run.run_id and run.job_type == "train"


def valid_png(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        image.load()  # decodes every pixel: a truncated file fails here
        return image.size


@pytest.mark.slow
def test_corp_run_draws_every_plot(wandb_run):
    out, _, _ = wandb_run
    for name in CORP_PLOTS:
        width, height = valid_png(out / "plots" / f"{name}.png")
        assert width >= 600 and height >= 400, name


def test_randopt_run_plots_accuracy_against_k(tiny_model_dir, task_args, tmp_path):  # noqa: F811
    res = tiny_run(tiny_model_dir, tmp_path, [*task_args, *EXTRA, "consolidation=randopt",
                                              "consolidation.vote_ks=[1,3]"], budget=COMMON)  # fmt: skip
    assert set(res["vote"]["accuracy"]) == {"1", "3"}
    for name in ("population_rewards", "reward_vs_sigma", "randopt_vote_accuracy"):
        valid_png(tmp_path / "plots" / f"{name}.png")
    (entry,) = read_rounds(tmp_path / "rounds.jsonl")
    top = entry["details"]["randopt/top_members"]
    assert [t["rank"] for t in top] == [1, 2, 3]
    assert top[0]["support_reward"] == max(entry["population"]["mean_rewards"])


@pytest.mark.slow
def test_results_json_has_the_run_throughput(wandb_run):
    _, results, _ = wandb_run
    t = results["throughput"]
    assert t["examples_decoded"] >= results["budget"]["example_evals"] + 2 * 3 * 8  # training + base/final splits
    assert t["tokens_generated"] > 0 and t["decode_seconds"] > 0
    assert t["examples_per_s"] == pytest.approx(t["examples_decoded"] / t["decode_seconds"])
    assert 0 < t["decode_share"] <= 1


@pytest.mark.slow
def test_rounds_jsonl_is_rewritten_not_duplicated_when_a_run_is_replayed(tiny_model_dir, task_args, tmp_path):  # noqa: F811
    args = [*task_args, *EXTRA]
    first = tiny_run(tiny_model_dir, tmp_path, args)
    before = read_rounds(tmp_path / "rounds.jsonl")
    assert [r["round"] for r in before] == [r["round"] for r in first["rounds"]]
    (tmp_path / "results.json").unlink()  # as if killed just before the end
    (tmp_path / "checkpoints" / "last.json").unlink()
    replayed = tiny_run(tiny_model_dir, tmp_path, args)  # resume=auto: replays every round from the saved scores
    assert replayed["throughput"]["examples_decoded"] < first["throughput"]["examples_decoded"]  # nothing redone
    after = read_rounds(tmp_path / "rounds.jsonl")
    assert [r["round"] for r in after] == [r["round"] for r in before]
    for a, b in zip(after, before, strict=True):
        assert a["details"] == b["details"] and a["population"] == b["population"]


def test_read_rounds_skips_only_a_torn_last_line(tmp_path):
    path = tmp_path / "rounds.jsonl"
    path.write_text('{"round": 0}\n{"round": 1}\n{"rou')
    assert [r["round"] for r in read_rounds(path)] == [0, 1]
    path.write_text('{"round": 0}\n{"rou\n{"round": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_rounds(path)


def test_wandb_tables_take_answers_of_mixed_and_structured_types():
    from corp.observe.logged import table

    t = table([{"answer": 42, "tests": ["assert f(1) == 2"]}, {"answer": "x", "reward": None}])
    assert t.columns == ["answer", "tests", "reward"]
    assert t.data == [[42, '["assert f(1) == 2"]', None], ["x", None, None]]


def comparable(out: Path) -> dict:
    """results.json without what timing or noise regeneration change."""
    res = json.loads((out / "results.json").read_text())
    for key in ("seconds", "peak_rss_mb", "throughput"):
        res.pop(key)
    res["budget"].pop("noise_draws")
    return res


@pytest.mark.slow
def test_prefetch_hints_save_noise_draws_and_change_nothing_else(tiny_model_dir, task_args, tmp_path, monkeypatch):  # noqa: F811
    args = [*task_args, *EXTRA]
    hinted = tiny_run(tiny_model_dir, tmp_path / "hints", args)
    monkeypatch.setattr(ParameterSpace, "prefetch", lambda self, directions, basis=False: None)
    unhinted = tiny_run(tiny_model_dir, tmp_path / "no_hints", args)
    assert hinted["rounds"][0]["stage1/committed"] == 1  # stage 2 ran around a basis the hint announced
    assert hinted["budget"]["noise_draws"] < unhinted["budget"]["noise_draws"]
    assert (tmp_path / "hints" / "direction.json").read_text() == (tmp_path / "no_hints" / "direction.json").read_text()
    assert comparable(tmp_path / "hints") == comparable(tmp_path / "no_hints")
