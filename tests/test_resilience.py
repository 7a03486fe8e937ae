"""Crashes: a run killed with SIGKILL and rerun ends exactly where one uninterrupted run ends
(several processes: tests/test_ranks.py).

The tiny random model on a custom task whose reward (the share of vowels in the completion)
differs between members, so that every decision of the operator depends on the scores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, TINY_BUDGET, tiny_run, vowel_task

# saving after every member makes "in the middle of population scoring" observable on disk
EXTRA = ["checkpoint_every_s=0.001", "export_model=false", "perturbation.sigmas=[0.5,1.0]", "trainer.num_threads=1"]


@pytest.fixture(scope="module")
def task_args(tmp_path_factory) -> list[str]:
    return vowel_task(tmp_path_factory.mktemp("data"), 40)


def cli(model_dir: Path, out: Path, task_args: list[str], extra=()) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), f"model.name_or_path={model_dir}", "logger=csv",
            f"hydra.run.dir={out}", *TINY_BUDGET, *task_args, *EXTRA, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def reference(tiny_model_dir, task_args, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    res = tiny_run(tiny_model_dir, out, [*task_args, *EXTRA])
    stage1 = res["rounds"][0]
    assert stage1["stage1/population_reward_max"] > stage1["stage1/population_reward_mean"]  # members differ
    return out


def comparable(out: Path) -> dict:
    """results.json without wall time, memory, throughput and noise draws (a replay decodes and
    regenerates less)."""
    res = json.loads((out / "results.json").read_text())
    for key in ("seconds", "peak_rss_mb", "throughput"):
        res.pop(key)
    res["budget"].pop("noise_draws")
    return res


def assert_same_run(out: Path, reference: Path) -> None:
    assert (out / "direction.json").read_text() == (reference / "direction.json").read_text()
    assert comparable(out) == comparable(reference)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 600) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; fail if it ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the run finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def interrupt_and_resume(model_dir: Path, out: Path, task_args, ready) -> subprocess.CompletedProcess:
    cmd = cli(model_dir, out, task_args)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, ready)
    assert proc.returncode == -signal.SIGKILL and not (out / "results.json").exists()
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_sigkill_during_population_scoring_then_rerun_gives_the_same_run(
    tiny_model_dir, task_args, tmp_path, reference
):
    out = tmp_path / "run"
    pops = out / "populations"

    def mid_population() -> bool:  # some members saved, the round not finished
        return (pops / "round_000.rank0.partial.npz").exists() and not (pops / "round_000.npz").exists()

    done = interrupt_and_resume(tiny_model_dir, out, task_args, mid_population)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "continuing the run" in (out / "train.log").read_text()
    assert_same_run(out, reference)


@pytest.mark.slow
def test_sigkill_during_stage2_then_rerun_gives_the_same_run(tiny_model_dir, task_args, tmp_path, reference):
    out = tmp_path / "run"

    def mid_stage2() -> bool:  # round 0 (stage 1) committed, stage-2 members being scored
        return (out / "populations" / "round_001.rank0.partial.npz").exists()

    done = interrupt_and_resume(tiny_model_dir, out, task_args, mid_stage2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(out, reference)


@pytest.mark.slow
def test_nan_rewards_fail_their_model_point_and_never_reach_the_update(tiny_model_dir, task_args, tmp_path):
    broken = [a.replace(":vowel_share", ":nan_for_some") for a in task_args]
    res = tiny_run(tiny_model_dir, tmp_path, [*broken, *EXTRA])
    assert res["budget"]["failed_points"] > 0
    direction = json.loads((tmp_path / "direction.json").read_text())["direction"]
    assert all(np.isfinite(direction["coeffs"]))
    for split in ("support", "probe", "test"):
        assert np.isfinite(res[split]["final_reward"])


def test_eval_mode_scores_a_saved_direction(tiny_model_dir, task_args, tmp_path, reference):
    trained = json.loads((reference / "results.json").read_text())
    common = [*task_args, *EXTRA, "mode=eval", "eval.splits=[probe,test]"]
    by_direction = tiny_run(tiny_model_dir, tmp_path / "a", [*common, f"eval.direction={reference}"])
    for split in ("probe", "test"):
        assert by_direction[split]["base"] == trained[split]["base"]
        assert by_direction[split]["final"] == trained[split]["final"]
    assert not (tmp_path / "a" / "populations").exists()  # nothing trained


def test_rerunning_a_finished_run_returns_its_results_without_running_again(
    tiny_model_dir, task_args, tmp_path, reference
):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    again = tiny_run(tiny_model_dir, out, [*task_args, *EXTRA])
    assert again == json.loads((reference / "results.json").read_text())  # wall time included: nothing reran


@pytest.mark.slow
def test_points_taken_from_another_run_stay_counted_as_reused_after_a_resume(
    tiny_model_dir, task_args, tmp_path, reference
):
    out = tmp_path / "reuser"
    args = [*task_args, *EXTRA, f"population.load={reference}"]
    first = tiny_run(tiny_model_dir, out, args)
    assert first["budget"]["members_reused"] > 0
    (out / "results.json").unlink()  # as if killed just before the end: every point is saved here too
    (out / "checkpoints" / "last.json").unlink()
    replayed = tiny_run(tiny_model_dir, out, args)
    for key in ("members_scored", "members_reused", "example_evals", "example_evals_reused"):
        assert replayed["budget"][key] == first["budget"][key], key
