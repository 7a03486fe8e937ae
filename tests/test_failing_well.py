"""Bad input found at the start or in the middle of a run: one line naming the key or the file, exit
status 2, nothing left behind; an interrupted run (SIGINT) saves what it scored, like SIGTERM."""

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
    return [f"model.name_or_path={model_dir}", "logger=csv", f"hydra.run.dir={out}", *TINY_BUDGET, *task_args,
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


@pytest.mark.parametrize(
    "override, names",
    [
        ("seed=abc", ["seed=abc", "Integer"]),
        ("perturbation.sigmas=abc", ["perturbation.sigmas=abc", "list"]),
        ("perturbation.sigmas=[abc,0.1]", ["perturbation.sigmas[0]", "'abc'", "Float"]),
        ("task=foo", ["task=foo", "allowed: arithmetic, countdown, custom"]),
        ("logger=foo", ["logger=foo", "allowed: csv, mlflow, none, tensorboard, wandb"]),
        ("foo=1", ["foo: no such key", "allowed: seed, mode"]),
        ("perturbation.foo=1", ["perturbation.foo: no such key", "population_size, sigmas"]),
        ("seed=[", ["'seed=['", "not a valid override"]),
    ],
)
def test_hydras_own_errors_read_as_one_line_naming_the_value_and_what_exists(override, names):
    from corp.hydra_errors import one_line

    with pytest.raises(Exception) as raised:
        compose_config([override])
    line = one_line(raised.value)
    assert "\n" not in line and all(n in line for n in names), line


@pytest.mark.parametrize(
    "override, names",
    [
        ("+foo=1", ["+foo: no such key", "allowed: checkpoint_every_s"]),
        ("+perturbation.foo=1", ["+perturbation.foo: no such key", "population_size"]),
        ("trainer.num_threads=-1", ["trainer.num_threads=-1", ">= 1, or null"]),
        ("log_samples=-3", ["log_samples=-3", ">= 0"]),
        ("model.name_or_path=corp-test/no-such-model", ["model.name_or_path='corp-test/no-such-model'"]),
    ],
)
def test_bad_values_hydra_accepts_are_refused_before_anything_is_written(tmp_path, override, names):
    message = refusal(tmp_path / "run", override)
    assert "\n" not in message and all(n in message for n in names), message


@pytest.fixture
def old_run(tmp_path) -> Path:
    """A folder holding an earlier run's files: a refused run must leave them as they are."""
    out = tmp_path / "old"
    (out / "populations").mkdir(parents=True)
    (out / "config.json").write_text("{}")
    (out / "populations" / "round_000.npz").write_bytes(b"scores")
    return out


def files_of(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_a_damaged_safetensors_file_is_refused_naming_it(tiny_model_dir, tmp_path, old_run, damage):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else np.random.default_rng(0).bytes(len(data)))
    message = refusal(tmp_path / "run", f"model.name_or_path={model}")
    assert message.startswith(f"model.name_or_path='{model}': model.safetensors is truncated or not a safetensors")
    before = files_of(old_run)
    with pytest.raises(ConfigError):
        run(compose_config([f"output_dir={old_run}", "logger=none", f"model.name_or_path={model}"]))
    assert files_of(old_run) == before


def test_an_include_that_selects_no_parameter_is_refused_before_the_model_loads(tiny_model_dir, tmp_path):
    message = refusal(tmp_path / "run", f"model.name_or_path={tiny_model_dir}", "perturbation.include=[nomatch.*]")
    assert message.startswith("perturbation.include=['nomatch.*']") and "select no parameters" in message
    assert "model.layers.0.self_attn.q_proj.weight" in message  # what the names look like


def test_a_custom_task_with_chat_message_prompts_is_refused(tiny_model_dir, tmp_path):
    data = tmp_path / "chats.jsonl"
    data.write_text(json.dumps({"prompt": [{"role": "user", "content": "Hi"}]}) + "\n")
    message = refusal(tmp_path / "run", f"model.name_or_path={tiny_model_dir}", "task=custom",
                      f"task.data_files={data}", "task.reward_fn=tests.fixtures.custom_rewards:length_only")  # fmt: skip
    assert message.startswith(f"task.data_files='{data}': train record 0: task.prompt_field='prompt': a prompt is a "
                              "list, not text") and "chat_template" in message  # fmt: skip


@pytest.mark.parametrize("mode", ["", "offlin"])
def test_a_wandb_mode_wandb_would_refuse_stops_the_run_in_one_line(tmp_path, monkeypatch, mode):
    monkeypatch.setenv("WANDB_MODE", mode)
    message = refusal(tmp_path / "run", "logger=wandb")
    assert f"WANDB_MODE={mode!r}" in message and "allowed: online, offline, disabled" in message


def test_analyze_names_the_unpack_command_in_a_committed_sweep_without_its_scores():
    from corp.analyze import PopulationError
    from corp.analyze.population import population_files

    (job,) = [p for p in (ROOT / "benchmarks" / "results" / "compare" / "arithmetic").iterdir()
              if p.name.startswith("1_")]  # fmt: skip
    if (job / "populations").is_dir():
        pytest.skip("the sweep's scores are unpacked here")
    with pytest.raises(PopulationError, match=r"python benchmarks/score_archive.py unpack"):
        population_files(job)


@pytest.mark.slow  # this and the tests below run train.py in a subprocess
@pytest.mark.parametrize(
    "override, start",
    [
        ("seed=abc", "config error: seed=abc: Value 'abc'"),
        ("task=foo", "config error: task=foo: no such option in conf/task/; allowed: arithmetic"),
        ("+foo=1", "config error: +foo: no such key"),
        ("hydra.run.dir={file}/run", "config error: hydra.run.dir: cannot create {file}/run (Not a directory)"),
    ],
)
def test_bad_input_on_the_command_line_is_one_line_exit_2_and_leaves_nothing(tiny_model_dir, tmp_path, override,
                                                                             start):  # fmt: skip
    out, file = tmp_path / "run", tmp_path / "file"
    file.write_text("")
    args = ["debug=smoke", f"model.name_or_path={tiny_model_dir}", "logger=none", f"hydra.run.dir={out}"]
    line = refused_line(train([*args, override.format(file=file)]))
    assert line.startswith(start.format(file=file)) and len(line.splitlines()) == 1
    assert not out.exists() and file.read_text() == ""


@pytest.mark.slow
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


@pytest.fixture
def small_disk(tmp_path):
    """A 300 KB tmpfs (needs root): a run folder on it fills up in the middle of the run."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("cannot mount a tmpfs here")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.slow
def test_a_disk_that_fills_up_ends_the_run_in_one_line_and_the_same_command_continues(tiny_model_dir, small_disk):
    out = small_disk / "run"
    args = ["debug=smoke", f"model.name_or_path={tiny_model_dir}", "logger=wandb", f"hydra.run.dir={out}"]
    line = refused_line(train(args))
    assert line.startswith("error: no space left on device") and "run the same command again" in line
    assert (out / "populations").is_dir() and not (out / "results.json").exists()  # what was scored is kept
    assert not (out / "model.tmp").exists()

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space is free again
    again = train(args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "continuing the run" in (out / "train.log").read_text()
    assert (out / "results.json").exists() and (out / "model" / "model.safetensors").exists()
