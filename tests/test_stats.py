"""Standard errors (corp.stats) and where a run reports them: results.json, the printed table, W&B."""

from __future__ import annotations

import numpy as np
import pytest

from corp.consolidate.base import Scores
from corp.results import Results, SplitResult
from corp.stats import binary_se, mean_se, split_se


def test_the_se_of_an_accuracy_follows_from_the_accuracy_and_the_count():
    outcomes = np.array([1, 0, 0, 1, 1, 0, 0, 0, 1, 0], dtype=float)
    assert mean_se(outcomes) == pytest.approx(np.std(outcomes, ddof=1) / np.sqrt(10))
    assert binary_se(outcomes.mean(), 10) == pytest.approx(mean_se(outcomes))
    assert mean_se([0.7]) == 0.0 and binary_se(1.0, 50) == 0.0


def test_the_gain_se_is_paired_over_the_same_examples():
    rng = np.random.default_rng(0)
    base_rewards = rng.uniform(size=200)
    final_rewards = base_rewards + 0.05 + rng.normal(scale=0.01, size=200)  # the same examples, slightly better
    base = Scores(base_rewards, base_rewards > 0.5)
    final = Scores(final_rewards, final_rewards > 0.5)
    se = split_se(base, final)
    assert se["gain_reward"] == pytest.approx(mean_se(final_rewards - base_rewards))
    assert se["gain_reward"] < se["base_reward"] / 10  # pairing removes the examples' own spread
    assert se["final"] == pytest.approx(binary_se(final.accuracy, 200))
    # flipped answers make the paired accuracy gain uncertain even when the accuracies agree
    flips = Scores(np.array([1.0, 0.0, 1.0, 0.0]), np.array([True, False, True, False]))
    flops = Scores(np.array([0.0, 1.0, 0.0, 1.0]), np.array([False, True, False, True]))
    assert split_se(flips, flops)["gain"] == pytest.approx(mean_se([-1, 1, -1, 1]))


def test_results_json_and_the_printed_table_carry_the_ses(tmp_path):
    base = Scores(np.array([1.0, 0.0, 0.0, 1.0]), np.array([True, False, False, True]))
    final = Scores(np.array([1.0, 1.0, 0.0, 1.0]), np.array([True, True, False, True]))
    split = SplitResult.of(base, final)
    res = Results(mode="eval", task="t", model="m", dtype="float32", splits={"test": split}, seconds=1.0,
                  evaluated="x")  # fmt: skip
    data = res.to_json()
    assert data["test"]["se"] == split_se(base, final)
    assert Results.from_json(data).splits["test"].se == data["test"]["se"]
    assert f"0.750±{split.se['final']:.3f}" in res.summary(tmp_path)
    del data["test"]["se"]  # a file from before SEs: read, printed without them
    (row,) = [line for line in Results.from_json(data).summary(tmp_path).splitlines() if line.startswith("test ")]
    assert row.split()[-1] == "0.750" and "±" not in row


def test_a_run_records_ses_on_every_split(tiny_results):
    out, res = tiny_results
    for split in ("support", "probe", "test"):
        se = res[split]["se"]
        assert set(se) == {"base", "final", "gain", "base_reward", "final_reward", "gain_reward"}
        assert se["final"] == pytest.approx(binary_se(res[split]["final"], res[split]["n"]))
    assert "delta ± paired SE" in Results.load(out).summary(out)
