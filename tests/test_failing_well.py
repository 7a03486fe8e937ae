"""Bad input found at the start or in the middle of a run: one line naming the key or the file, exit
status 2, nothing left behind; an interrupted run (SIGINT) saves what it scored, like SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from corp.config import ConfigError
from corp.run import run
from tests.conftest import ROOT, TINY_BUDGET, compose_config
from tests.test_resilience import EXTRA, task_args  # noqa: F401 - task_args is a fixture

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
REWARDS = ROOT / "tests" / "fixtures" / "signal_rewards.py"


def train(args: list[str], **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "train.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env={**ENV, **kw.pop("env", {})})


def tiny(model_dir: Path, out: Path, task_args: list[str], *extra: str) -> list[str]:  # noqa: F811
    return [f"model.name_or_path={model_dir}", "logger=csv", f"hydra.run.dir={out}", *task_args, *TINY_BUDGET,
            *EXTRA, *extra]  # fmt: skip


def refused_line(proc: subprocess.CompletedProcess) -> str:
    """The one line a refused run prints: exit status 2, no traceback."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


def refusal(out: Path, *overrides: str) -> str:
    """What `run` refuses with, in this process (train.py prints it as the one line tested above)."""
    with pytest.raises(ConfigError) as refused:
        run(compose_config([f"output_dir={out}", "logger=none", *overrides]))
    assert not out.exists()
    return str(refused.value)


def test_gpu_trainer_without_a_gpu_is_refused_before_anything_is_written(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    message = refusal(tmp_path / "run", "trainer=gpu")
    assert message.startswith("trainer.accelerator='gpu'") and "trainer=cpu" in message


def test_truncated_gguf_is_refused_naming_the_key_and_the_file(tmp_path):
    from corp.models.loading import ModelConfig, cache_root, embedded_gguf

    whole = embedded_gguf(cache_root(ModelConfig()) / "downloads")
    cut = tmp_path / "cut.gguf"
    with open(whole, "rb") as f:
        cut.write_bytes(f.read(1 << 20))  # the header and the first tensors' data only
    message = refusal(tmp_path / "run", f"model.name_or_path={cut}", f"model.cache_dir={tmp_path / 'cache'}")
    assert f"model.name_or_path='{cut}'" in message and "truncated or corrupt" in message
    assert not any((tmp_path / "cache").rglob("*.safetensors"))  # no half-converted model either


@pytest.mark.slow  # this and the tests below run train.py in a subprocess
def test_reward_function_raising_mid_run_is_one_line_and_leaves_nothing(tiny_model_dir, task_args, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    broken = [a.replace(":vowel_share", ":raises_later") for a in task_args]
    line = refused_line(train(tiny(tiny_model_dir, out, broken)))
    assert line == f"error: task.reward_fn='{REWARDS}:raises_later' raised ZeroDivisionError: division by zero"
    assert not out.exists()


@pytest.mark.slow
def test_a_run_whose_every_point_failed_exits_non_zero_saying_why(tiny_model_dir, task_args, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    broken = [a.replace(":vowel_share", ":always_nan") for a in task_args]
    line = refused_line(train(tiny(tiny_model_dir, out, broken)))
    assert "task.reward_fn=" in line and "every point scored in training" in line and "NaN" in line
    assert not out.exists()


@pytest.mark.slow
def test_refused_resume_leaves_the_old_runs_files_untouched(tiny_model_dir, task_args, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    first = train(tiny(tiny_model_dir, out, task_args))
    assert first.returncode == 0, first.stderr[-3000:]
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert {".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml"} <= {
        str(p.relative_to(out)) for p in before
    }
    line = refused_line(train(tiny(tiny_model_dir, out, task_args, "seed=7")))
    assert "changed: seed" in line and "resume=never" in line
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # .hydra/, config.json, results, even train.log


@pytest.mark.slow
def test_sigint_saves_the_members_scored_so_far_and_a_rerun_continues(tiny_model_dir, task_args, tmp_path):  # noqa: F811
    out, calls = tmp_path / "run", tmp_path / "calls.txt"
    slow = [a.replace(":vowel_share", ":slow_counted") for a in task_args]
    args = tiny(tiny_model_dir, out, slow, "checkpoint_every_s=3600")  # no timed saves: only the interrupt saves
    cmd = [sys.executable, str(ROOT / "train.py"), *args]
    env = {**ENV, "CORP_TEST_CALLS": str(calls)}
    # pre-flight + 3 base splits + 2 members, then the 3rd member's reward call waits: round 0 is being scored
    paused = {**env, "CORP_TEST_PAUSE_AT": "7"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=paused, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (calls.exists() and len(calls.read_text().splitlines()) >= 7):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:] if proc.stderr else ""
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, stderr[-3000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted (SIGINT): what was scored is saved in")
    (partial,) = (out / "populations").glob("round_000.rank0.partial.npz")
    saved = np.load(partial)["rewards"].shape[0]
    assert 2 <= saved < 4  # the members scored before the signal, not the whole population
    assert not (out / "results.json").exists()

    calls.unlink()
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "continuing the run" in (out / "train.log").read_text()
    res = json.loads((out / "results.json").read_text())
    assert res["budget"]["members_scored"] >= 4
