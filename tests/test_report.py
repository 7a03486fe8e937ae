"""python -m corp.report on small synthetic folders of runs (the report only reads results.json and config.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corp.report.__main__ import main as report_main
from corp.report.sweep import build_table, load_runs
from corp.results import Budget, Committed, Results, SplitResult, Vote

BASE = {"arithmetic": 0.20, "countdown": 0.10, "gym": 0.3, "gsm8k": 0.4}


def fake_run(
    folder: Path,
    method: str = "corp",
    task: str = "arithmetic",
    seed: int = 0,
    final: float = 0.3,
    config: dict | None = None,
    votes: dict | None = None,
    finished: bool = True,
) -> Path:
    """A run folder as train.py leaves it: the resolved config and (when finished) results.json."""
    options = {
        "corp": {"quantiles": [0.5, 0.7], "betas": [2.0], "rank": 8},
        "randopt": {"population_multiplier": 10, "vote_ks": [1, 3]},
        "soup": {"top_k": 4},
        "es": {"rounds": 3, "population_size": None, "sigma": 0.001},
    }[method]
    cfg = {
        "seed": seed,
        "mode": "train",
        "model": {"name_or_path": "embedded", "batch_size": 64},
        "task": {"name": task, "support_size": 32, "test_size": 100, "data_seed": 0},
        "perturbation": {"population_size": 8, "sigmas": [0.002, 0.004]},
        "consolidation": {"name": method, **options},
        "population": {"load": str(folder.parent)},
        "trainer": {"num_threads": 1},
        "output_dir": str(folder),
    }
    for dotted, value in (config or {}).items():
        group, key = dotted.split(".")
        cfg[group][key] = value
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    if finished:
        members = 80 if method == "randopt" else 8
        results = Results(
            "train", task, "embedded", "float32", {"test": SplitResult(BASE[task], final, 0.0, 0.0, 100)}, 60.0,
            method=method, seed=seed, budget=Budget(members_scored=members, example_evals=32 * members),
            committed=Committed(0, 0.0), vote=Vote(votes, [], {}) if votes else None,
        )  # fmt: skip
        (folder / "results.json").write_text(json.dumps(results.to_json()))
    return folder


def report_text(folder: Path, *args: str, capsys) -> str:
    assert report_main([str(folder), *args]) == 0
    return capsys.readouterr().out


def table_lines(text: str) -> list[list[str]]:
    """The cells of each markdown row below the header."""
    lines = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


@pytest.fixture
def comparison(tmp_path) -> Path:
    """Methods x tasks x seeds, each method with its own consolidation options."""
    root = tmp_path / "compare"
    for task in ("arithmetic", "countdown"):
        for seed in (0, 1):
            votes = {"1": 0.25, "3": 0.35}
            fake_run(root / task / f"randopt_{seed}", "randopt", task, seed, 0.25 + 0.1 * seed, votes=votes)
            fake_run(root / task / f"corp_{seed}", "corp", task, seed, 0.30 + 0.1 * seed)
            fake_run(root / task / f"soup_{seed}", "soup", task, seed, 0.22)
            fake_run(root / task / f"es_{seed}", "es", task, seed, 0.21)
    return root


def test_a_comparison_is_a_methods_by_tasks_table(comparison, capsys):
    text = report_text(comparison, "--out", str(comparison / "out"), capsys=capsys)
    header = "| method | arithmetic | countdown | mean | members scored | example evals | passes / test example |"
    assert header in text.splitlines()
    rows = table_lines(text)
    assert [r[0] for r in rows] == [
        "base", "RandOpt top-1 (N=80)", "RandOpt vote K=1 (N=80)", "RandOpt vote K=3 (N=80)",
        "ES (N=8 x 3 rounds)", "Soup (N=8)", "CoRP (N=8)",
    ]  # fmt: skip
    by_label = {r[0]: r for r in rows}
    # the same base model: counted once per task; a run's SE over its 100 examples is sqrt(p (1 - p) / 99)
    assert by_label["base"][1:4] == ["20.0 (n=1; ±4.0/run)", "10.0 (n=1; ±3.0/run)", "15.0"]
    # seeds at 30 and 40: SE over seeds std(ddof=1) / sqrt(2) = 5.0; runs' SEs 4.6 and 4.9
    assert by_label["CoRP (N=8)"][1] == "35.0 ± 5.0 (n=2; ±4.8/run)" and by_label["CoRP (N=8)"][3] == "35.0"
    assert by_label["RandOpt vote K=3 (N=80)"][-1] == "3"
    assert "- CoRP vs base: +20.0 points (mean over 2 tasks)" in text.splitlines()
    assert "- CoRP vs RandOpt top-1 (N=80): +5.0 points" in text.splitlines()
    assert "target" not in text  # a user's report states results, not the project's goals
    assert "Rows: method x" not in text and "Skipped" not in text
    assert (comparison / "out" / "report.md").read_text().strip() == text.strip()
    assert (comparison / "out" / "report.png").stat().st_size > 10_000


@pytest.fixture
def grid(tmp_path) -> Path:
    """CoRP swept over quantiles x sigmas x seeds, plus one RandOpt run, on one task."""
    root = tmp_path / "grid"
    grid_points = [(q, s, seed) for q in ([0.5], [0.9]) for s in ([0.001], [0.002]) for seed in (0, 1)]
    for i, (q, sigmas, seed) in enumerate(grid_points):
        final = 0.3 + (0.1 if q == [0.9] else 0.0) + (0.02 if sigmas == [0.002] else 0.0) + 0.01 * seed
        cfg = {"consolidation.quantiles": q, "perturbation.sigmas": sigmas}
        fake_run(root / f"{i}_corp", "corp", seed=seed, final=final, config=cfg)
    fake_run(root / "8_randopt", "randopt", final=0.28, votes={"1": 0.28}, config={"perturbation.sigmas": [0.001]})
    return root


def test_swept_keys_become_columns_and_cells_average_the_seeds(grid, capsys):
    text = report_text(grid, capsys=capsys)
    header = (
        "| method | consolidation.quantiles | perturbation.sigmas | arithmetic | members scored |"  # one task: no mean
    )
    assert text.splitlines()[3].startswith(header)
    assert "Rows: method x `consolidation.quantiles`, `perturbation.sigmas`." in text
    rows = table_lines(text)
    corp = {tuple(r[1:3]): r[3] for r in rows if r[0] == "CoRP (N=8)"}
    assert corp == {
        ("[0.5]", "[0.001]"): "30.5 ± 0.5 (n=2; ±4.6/run)",
        ("[0.5]", "[0.002]"): "32.5 ± 0.5 (n=2; ±4.7/run)",
        ("[0.9]", "[0.001]"): "40.5 ± 0.5 (n=2; ±4.9/run)",
        ("[0.9]", "[0.002]"): "42.5 ± 0.5 (n=2; ±5.0/run)",
    }
    base = [r for r in rows if r[0] == "base"]
    assert len(base) == 1 and base[0][1:4] == [
        "·",
        "·",
        "20.0 (n=1; ±4.0/run)",
    ]  # these keys cannot change the base model
    randopt = next(r for r in rows if r[0].startswith("RandOpt top-1"))
    assert randopt[1:3] == ["–", "[0.001]"]  # RandOpt has no quantiles
    # one comparison block per CoRP setting, RandOpt matched only where its sigmas agree
    assert "- [consolidation.quantiles=[0.9], perturbation.sigmas=[0.002]] CoRP vs base: +22.5 points" in text
    assert "[consolidation.quantiles=[0.9], perturbation.sigmas=[0.001]] CoRP vs RandOpt top-1 (N=80): +12.5" in text
    assert "perturbation.sigmas=[0.002]] CoRP vs RandOpt" not in text


def test_a_task_with_data_sets_is_labelled_by_its_data_set(tmp_path, capsys):
    for seed in (0, 1):
        fake_run(tmp_path / f"gym_{seed}", task="gym", seed=seed, config={"task.dataset": "letter_counting"})
    fake_run(tmp_path / "data", task="gsm8k", config={"task.dataset": "openai/gsm8k"})  # one data set: its name
    text = report_text(tmp_path, capsys=capsys)
    assert "| method | gsm8k | letter_counting | mean |" in text
    assert "(mean over 2 tasks)" in text


def test_by_picks_the_grouping_and_pools_the_other_swept_keys(grid, capsys):
    text = report_text(grid, "--by", "consolidation.quantiles", capsys=capsys)
    assert "| method | consolidation.quantiles | arithmetic |" in text
    assert "Pooled with the seeds (not a grouping key): `perturbation.sigmas`." in text
    corp = {r[1]: r[2] for r in table_lines(text) if r[0] == "CoRP (N=8)"}
    assert corp == {"[0.5]": "31.5 ± 0.6 (n=4; ±4.7/run)", "[0.9]": "41.5 ± 0.6 (n=4; ±5.0/run)"}


def test_a_numeric_swept_key_is_plotted_against(tmp_path, capsys):
    root = tmp_path / "sizes"
    for size, acc in ((16, 0.25), (32, 0.3), (64, 0.4)):
        for seed in (0, 1):
            fake_run(root / f"corp_{size}_{seed}", seed=seed, final=acc, config={"task.support_size": size})
    text = report_text(root, capsys=capsys)
    rows = table_lines(text)
    # support size is a task setting: the base row is split by it too, and sorts numerically
    assert [r[1] for r in rows if r[0] == "base"] == ["16", "32", "64"]
    assert [r[2] for r in rows if r[0] == "CoRP (N=8)"] == [
        "25.0 ± 0.0 (n=2; ±4.4/run)",
        "30.0 ± 0.0 (n=2; ±4.6/run)",
        "40.0 ± 0.0 (n=2; ±4.9/run)",
    ]
    assert (root / "report.png").stat().st_size > 10_000


def test_by_refuses_keys_that_do_not_vary_or_do_not_exist(grid, capsys):
    allowed = "keys that vary: consolidation.quantiles, perturbation.sigmas"
    for key, why in [
        ("consolidation.betas", "--by consolidation.betas: has one value in all 9 runs"),
        ("consolidation.nope", "--by consolidation.nope: is not a config key of these 9 runs"),
        ("seed", "--by seed: is bookkeeping"),
        ("task.name", "--by task.name: is already the table's layout"),
    ]:
        assert report_main([str(grid), "--by", f"perturbation.sigmas,{key}"]) == 2
        err = capsys.readouterr().err
        assert why in err and allowed in err, err
    assert not (grid / "report.md").exists()


def test_unfinished_runs_are_skipped_and_counted(comparison, capsys):
    fake_run(comparison / "countdown" / "corp_2", "corp", "countdown", seed=2, finished=False)
    model_dir = comparison / "arithmetic" / "corp_0" / "model"  # an exported model's config.json is no run
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"model_type": "llama"}))
    text = report_text(comparison, capsys=capsys)
    assert "Skipped 1 unfinished runs (no results.json): `countdown/corp_2`." in text
    assert "of 16 runs under" in text


def test_eval_runs_get_a_row_of_their_own(tmp_path, capsys):
    fake_run(tmp_path / "run", final=0.3)
    (tmp_path / "eval").mkdir()
    results = Results("eval", "arithmetic", "embedded", "float32", {"test": SplitResult(0.2, 0.3, 0.0, 0.0, 100)}, 5.0,
                      evaluated="/x/run/direction.json")  # fmt: skip
    (tmp_path / "eval" / "results.json").write_text(json.dumps(results.to_json()))
    runs, _ = load_runs(tmp_path)
    labels = [r.label for r in build_table(runs).rows]
    assert labels == ["base", "CoRP (N=8)", "evaluated direction.json"]


def test_a_folder_without_finished_runs_is_an_error(tmp_path, capsys):
    fake_run(tmp_path / "going", finished=False)
    assert report_main([str(tmp_path)]) == 2
    assert "no results.json below" in capsys.readouterr().err
    assert report_main([str(tmp_path / "missing")]) == 2


def test_the_report_takes_each_methods_rows_from_the_operator_registry(tmp_path, monkeypatch):
    """A new operator names its rows and its place in the registry; the report needs no change."""
    from dataclasses import dataclass

    from corp.consolidate import OPERATORS
    from corp.consolidate.base import Operator, ReportRow
    from corp.consolidate.soup import SoupConfig, SoupOperator
    from corp.registry import Registry

    @dataclass
    class HalvesConfig(SoupConfig):
        name: str = "halves"

    class Halves(SoupOperator):
        config_class, display_name, compared = HalvesConfig, "Halves", True

        @classmethod
        def report_rows(cls, results, config):
            early = results.rounds[0]["early"]  # whatever the method recorded in its run
            return [ReportRow("Halves early", early, sort=(1,)), ReportRow("Halves late", results.splits["test"].final)]

    registry = Registry("consolidation", "operator", Operator)
    registry.register("halves")(Halves)  # registered first, so listed first
    for name, op in OPERATORS.items():
        registry.register(name)(op)
    monkeypatch.setattr("corp.report.table.OPERATORS", registry)
    fake_run(tmp_path / "r", "randopt", final=0.28, votes={"1": 0.28, "3": 0.31})
    folder = fake_run(tmp_path / "h", "soup", final=0.4)
    results = json.loads((folder / "results.json").read_text())
    results["method"], results["rounds"] = "halves", [{"round": 0, "early": 0.35}]
    (folder / "results.json").write_text(json.dumps(results))
    table = build_table(load_runs(tmp_path)[0])
    assert [r.label for r in table.rows] == [
        "base", "Halves late", "Halves early", "RandOpt top-1 (N=80)", "RandOpt vote K=1 (N=80)",
        "RandOpt vote K=3 (N=80)",
    ]  # fmt: skip
    from corp.report.markdown import comparisons

    lines = comparisons(table)
    # both of its rows are compared, against the reference and the largest ensemble of RandOpt
    assert "- Halves vs base: +20.0 points (on arithmetic)" in lines
    assert "- Halves vs RandOpt top-1 (N=80): +12.0 points" in lines
    assert "- share of the RandOpt vote K=3 (N=80) gain over base (+11.0) that Halves recovers: 182%" in lines
    assert len(lines) == 6


def test_every_registered_operator_names_its_report_rows():
    from corp.consolidate import OPERATORS

    vote = Vote({"1": 0.5, "5": 0.6}, [0.5] * 5, {"1": 1, "5": 5})
    results = Results("train", "arithmetic", "m", "float32", {"test": SplitResult(0.4, 0.5, 0.4, 0.5, 8)}, 1.0,
                      budget=Budget(members_scored=40), vote=vote)  # fmt: skip
    config = {"perturbation": {"population_size": 8}, "consolidation": {"rounds": 3, "population_size": None}}
    for name, op in OPERATORS.items():
        assert op.name == name and op.display_name and op.display_name != name
        rows = op.report_rows(results, config)
        assert rows and all(r.label.startswith(op.display_name) and 0 <= r.accuracy <= 1 for r in rows), name
