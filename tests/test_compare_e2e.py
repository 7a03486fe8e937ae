"""The comparison end to end on the tiny model: RandOpt at 2 N, then CoRP, soup and ES reusing its
saved population, and the report over the folder of runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from corp.report.__main__ import main as report_main
from tests.conftest import TINY_BUDGET, TINY_SIGMAS, tiny_run

pytestmark = pytest.mark.slow  # five runs in a row; each operator has fast unit tests (test_baselines.py)

# the task/perturbation part of TINY_BUDGET, which every method shares (consolidation keys are CoRP's)
SHARED = [o for o in TINY_BUDGET if not o.startswith("consolidation.")] + [TINY_SIGMAS]


@pytest.fixture(scope="module")
def sweep(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    randopt = ["consolidation=randopt", "consolidation.population_multiplier=2", "consolidation.vote_ks=[1,3]"]
    results = {"randopt": tiny_run(tiny_model_dir, root / "0_randopt", randopt, SHARED)}
    load = [f"population.load={root}"]
    results["corp"] = tiny_run(tiny_model_dir, root / "1_corp", [TINY_SIGMAS, *load])
    results["soup"] = tiny_run(
        tiny_model_dir, root / "2_soup", ["consolidation=soup", "consolidation.top_k=2", *load], SHARED
    )
    es = ["consolidation=es", "consolidation.rounds=2", "consolidation.sigma=0.5", *load]
    results["es"] = tiny_run(tiny_model_dir, root / "3_es", es, SHARED)
    return root, results


def test_randopt_reports_the_top1_model_and_each_vote(sweep):
    root, results = sweep
    res = results["randopt"]
    assert res["method"] == "randopt" and res["budget"]["members_scored"] == 8
    assert set(res["test"]["vote"]) == {"1", "3"}
    assert res["test"]["vote"]["1"] == res["test"]["final"]  # a vote of one is the top-1 model
    assert res["vote"]["forward_passes_per_test_example"] == {"1": 1, "3": 3}
    assert np.load(root / "0_randopt" / "populations" / "round_000.npz")["rewards"].shape == (8, 8)


def test_corp_on_a_saved_population_gives_the_same_run_as_scoring_it(sweep, tiny_results):
    root, results = sweep
    out, scored_here = tiny_results
    reused = results["corp"]
    assert reused["budget"]["members_reused"] == 4  # round 0: the first 4 of RandOpt's 8
    assert reused["budget"]["members_scored"] == scored_here["budget"]["members_scored"]
    for split in ("support", "probe", "test"):
        assert reused[split] == scored_here[split]
    assert (root / "1_corp" / "direction.json").read_text() == (out / "direction.json").read_text()


def test_soup_and_es_reuse_what_matches_and_score_the_rest(sweep):
    _, results = sweep
    assert results["soup"]["budget"]["members_reused"] == 4
    es = results["es"]["budget"]
    # ES draws its round-0 members at its own sigma (0.5): members 0 and 2 match RandOpt's (0.5, 1.0, ...)
    assert es["members_scored"] == 8 and es["members_reused"] == 2 and es["rounds"] == 2


def test_report_tabulates_every_method_and_draws_the_chart(sweep, capsys):
    root, _ = sweep
    assert report_main([str(root)]) == 0
    text = capsys.readouterr().out
    for label in ("| base", "RandOpt top-1 (N=8)", "RandOpt vote K=3 (N=8)", "CoRP (N=4)", "Soup (N=4)", "ES (N=4 x 2"):
        assert label in text, label
    assert (root / "report.png").stat().st_size > 10_000
    assert json.loads((root / "1_corp" / "results.json").read_text())["method"] == "corp"
    assert report_main([str(root / "missing")]) == 2
