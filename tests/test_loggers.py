"""Loggers chosen by name (the LOGGERS registry): the W&B run's settings from the command line, several loggers at once,
optional backends refused in one line when their package is missing, and kill -9 + resume continuing
the same W&B run instead of opening a second one."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corp.config import ConfigError
from corp.observe.wandb_files import history_rows
from corp.observe.wandb_files import records as wandb_records
from corp.run import run
from tests.conftest import ROOT, TINY_BUDGET, compose_config
from tests.test_resilience import EXTRA, task_args  # noqa: F401 - task_args is a fixture

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
ENV.pop("WANDB_API_KEY", None)


def cmd(model_dir: Path, out: Path, task_args: list[str], *extra: str) -> list[str]:  # noqa: F811
    return [sys.executable, str(ROOT / "train.py"), f"model.name_or_path={model_dir}", f"hydra.run.dir={out}",
            *TINY_BUDGET, *task_args, *EXTRA, *extra]  # fmt: skip


def runs_of(out: Path) -> list[Path]:
    return sorted(out.glob("wandb/offline-run-*/run-*.wandb"))


def run_record(run_file: Path):
    return next(r.run for r in wandb_records(run_file) if r.WhichOneof("record_type") == "run")


@pytest.mark.slow
def test_wandb_settings_and_several_loggers_from_the_command_line(tiny_model_dir, task_args, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    proc = subprocess.run(cmd(tiny_model_dir, out, task_args, "logger=[wandb,csv]", "logger.wandb.tags=[smoke,ci]",
                              "logger.wandb.name=my-run", "logger.wandb.job_type=study", "logger.wandb.project=mine",
                              "logger.wandb.notes=hello"),
                          capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_file,) = runs_of(out)
    run = run_record(run_file)
    assert list(run.tags) == ["smoke", "ci"] and run.display_name == "my-run" and run.job_type == "study"
    assert run.project == "mine" and run.notes == "hello"
    assert (out / "csv" / "metrics.csv").read_text().count("\n") >= 3  # a header and one row per round
    assert "anonymous" not in proc.stderr + proc.stdout  # no Trainer WandbLogger warning


@pytest.mark.parametrize("name, package", [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_optional_logger_without_its_package_is_refused_in_one_line(tmp_path, name, package):
    """In this process: `run` refuses with the line train.py prints (a refusal's exit status: test_config.py)."""
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed")
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as refused:
        run(compose_config([f"logger={name}", f"output_dir={out}"]))
    line = str(refused.value)
    assert "\n" not in line and line.startswith(f"logger.{name}:") and f"pip install {package}" in line
    assert not out.exists()


def history(run_files: list[Path]) -> list[tuple[int, dict]]:
    return [step_row for f in run_files for step_row in history_rows(f)]


def logged_once(rows: list[tuple[int, dict]]) -> tuple[dict[int, float], set[tuple[int, str]]]:
    """Each point's reward and each round's keys, asserting that W&B holds every one exactly once. A
    round's sample table of its best member and the per-function reward means are left out: a resume
    replays members from their saved scores, which keep neither completions nor reward components."""
    points: dict[int, float] = {}
    round_keys: list[tuple[int, str]] = []
    for _, row in rows:
        if "point" in row:
            assert row["point"] not in points, f"point {row['point']} logged twice"
            points[row["point"]] = row.get("member/reward", row.get("candidate/reward"))
        else:
            round_keys += [(row["round"], k) for k in row if not k.startswith("_") and k != "round"]
    assert len(round_keys) == len(set(round_keys)), "a round's value logged twice"
    return points, {rk for rk in round_keys if rk[1] != "samples/round_best_member" and "/rewards/" not in rk[1]}


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, task_args, tmp_path_factory) -> list[tuple[int, dict]]:  # noqa: F811
    """The W&B history of the run below, uninterrupted."""
    out = tmp_path_factory.mktemp("uninterrupted")
    run(compose_config([f"model.name_or_path={tiny_model_dir}", f"output_dir={out}", *TINY_BUDGET,
                        *task_args, *EXTRA, "logger=wandb", "logger.wandb.offline=true"]))  # fmt: skip
    return history(runs_of(out))


@pytest.mark.slow
@pytest.mark.parametrize("when", ["round_000.rank0.partial.npz", "round_001.rank0.partial.npz"])  # in round 0, 1
def test_kill_9_and_resume_log_every_point_and_round_to_wandb_exactly_once(tiny_model_dir, task_args, tmp_path,  # noqa: F811
                                                                          uninterrupted, when):  # fmt: skip
    out = tmp_path / "run"
    args = cmd(tiny_model_dir, out, task_args, "logger=wandb")
    proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "populations" / when).exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    again = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    first, second = runs_of(out)  # offline-run-<time>-<run id>/: the killed attempt's, then the resumed one's
    saved = json.loads((out / "wandb_run.json").read_text())["id"]
    assert first.parent.name.endswith(f"-{saved}") and second.parent.name.endswith(f"-{saved}")
    assert run_record(second).run_id == saved
    assert run_record(second).resumed

    # W&B writes its file in blocks: the killed attempt's segment may hold some of the run, or nothing
    resumed = history([first, second])
    steps = [step for step, _ in resumed]
    assert steps == list(range(len(steps)))  # _step goes on where the killed attempt's W&B stopped
    assert len(history([first])) < len(steps)
    assert logged_once(resumed) == logged_once(uninterrupted)  # every point (same rewards) and round value, once
