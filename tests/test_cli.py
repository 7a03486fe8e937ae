"""The command line as Hydra users expect it: a bad job fails alone in a sweep, an Optuna trial with a
refused config is a failed trial, `experiment=` and `debug=` without `+`, `--cfg job --resolve`,
`--help` and tab completion without schema entries, readable job folder names, and multirun with
several processes per job refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from corp import cli
from corp.config import ConfigError, job_dirname
from tests.conftest import ROOT, TINY_BUDGET, compose_config, compose_with_hydra

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
FAST = [*TINY_BUDGET, "consolidation.stage2_rounds=0", "task.max_new_tokens=4", "export_model=false",
        "trainer.num_threads=1", "logger=none"]  # fmt: skip


def train(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**ENV, **(env or {})})  # fmt: skip


def jobs(sweep: Path) -> dict[int, Path]:
    return {int(p.name.split("_")[0]): p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit()}


@pytest.mark.slow
def test_a_bad_job_fails_alone_and_the_sweep_exits_non_zero(tiny_model_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = train("-m", "perturbation.population_size=1,4", f"model.name_or_path={tiny_model_dir}",
                 f"hydra.sweep.dir={sweep}", *(o for o in FAST if "population_size" not in o))  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    found = jobs(sweep)
    bad, good = found[0], found[1]
    line = (bad / "error.txt").read_text().strip()
    assert line.startswith("config error: perturbation.population_size=1")
    assert line in (bad / "train.log").read_text()
    assert not (bad / "config.json").exists() and not (bad / ".hydra").exists()
    assert json.loads((good / "results.json").read_text())["budget"]["members_scored"] >= 4
    assert not (good / "error.txt").exists()
    assert f"job(s) of the sweep were refused (see error.txt in each): {bad.name}" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_an_optuna_trial_with_a_refused_config_is_a_failed_trial(tiny_model_dir, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs the sweeps extra")
    sweep = tmp_path / "optuna"
    proc = train("-m", "hydra/sweeper=corp_optuna", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=1",
                 "perturbation.population_size=choice(1,4)", f"model.name_or_path={tiny_model_dir}",
                 f"hydra.sweep.dir={sweep}", "perturbation.sigmas=[0.5,1.0]",
                 *(o for o in FAST if "population_size" not in o))  # fmt: skip
    found = jobs(sweep)
    assert len(found) == 4, proc.stderr[-3000:]  # the study went on after the refused trial
    refused = [j for j in found.values() if (j / "error.txt").exists()]
    finished = [j for j in found.values() if (j / "results.json").exists()]
    assert refused and finished and len(refused) + len(finished) == 4
    assert "Failed experiment" in proc.stderr + proc.stdout
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_params"]["perturbation.population_size"] == 4
    assert proc.returncode == 2


def test_experiment_and_debug_groups_need_no_plus():
    """Composed as train.py composes them (the CLI's --cfg job is the slow test below)."""
    cfg = compose_config(["debug=smoke"])
    assert cfg.perturbation.population_size == 4 and cfg.task.test_size == 8
    assert cfg.consolidation.stage2_rounds == 1  # CoRP's own smallest settings
    other = compose_config(["debug=smoke", "consolidation=randopt"])
    assert other.consolidation.name == "randopt" and other.perturbation.population_size == 4
    compare = compose_with_hydra(["experiment=compare"])
    assert compare.hydra.mode == RunMode.MULTIRUN and compare.task.support_size == 32


@pytest.mark.slow
def test_cfg_job_resolve_prints_the_resolved_config():
    proc = train("--cfg", "job", "--resolve")
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["output_dir"].startswith("outputs/runs/") and cfg["output_dir"].endswith("_countdown_corp")


@pytest.mark.slow
def test_help_lists_groups_and_keys_without_schema_entries():
    text = train("--help").stdout
    assert "gradient-free post-training" in text and "== Main keys" in text
    assert "task: arithmetic, countdown" in text and "logger: " in text and "debug: limit, profiler, smoke" in text
    assert "schema" not in text
    for line in ("python train.py ", "python train.py logger=", "python train.py task="):
        completion = train("-sc", "query=bash", env={"COMP_LINE": line}).stdout
        assert completion.strip() and "schema" not in completion, line


def test_job_folder_names_are_readable_and_never_cut_inside_an_override():
    assert job_dirname(["seed=1", "consolidation.betas=[2.0]"], []) == "betas=_2.0,seed=1"
    assert job_dirname(["task.max_new_tokens=4", "model.max_new_tokens=8"], []) == (
        "model.max_new_tokens=8,task.max_new_tokens=4"  # the same last part: keys kept whole
    )
    assert job_dirname(["output_dir=/x", "seed=2"], ["output_dir"]) == "seed=2"
    assert job_dirname([], []) == "default"
    many = [f"consolidation.option_number_{i}=value_{i}" for i in range(12)]
    name = job_dirname(many, [])
    assert len(name) <= 80
    *kept, digest = name.split(",")
    assert kept and all(part in {f"option_number_{i}=value_{i}" for i in range(12)} for part in kept)
    assert len(digest) == 8 and job_dirname(many[:-1] + ["consolidation.option_number_11=other"], []) != name


@pytest.mark.slow
def test_a_sweep_writes_one_folder_per_job_under_its_short_name(tiny_model_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = train("-m", "consolidation.betas=[2.0],[5.0]", f"model.name_or_path={tiny_model_dir}",
                 f"hydra.sweep.dir={sweep}", *(o for o in FAST if "betas" not in o))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = jobs(sweep)
    names = [found[i].name for i in sorted(found)]  # every override of the job, fixed ones too
    assert [n[: len("0_betas=_2.0,")] for n in names] == ["0_betas=_2.0,", "1_betas=_5.0,"]
    assert all(len(n) <= 82 and len(n.rsplit(",", 1)[1]) == 8 for n in names)  # the items that fit + a hash
    for i, betas in ((0, [2.0]), (1, [5.0])):  # each job ran its own setting to the end
        assert json.loads((found[i] / "config.json").read_text())["consolidation"]["betas"] == betas
        assert json.loads((found[i] / "results.json").read_text())["method"] == "corp"


@pytest.mark.slow
def test_multirun_with_processes_per_job_is_refused_in_one_line(tiny_model_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = train("-m", "seed=0", "trainer.devices=2", "trainer.strategy=ddp", f"model.name_or_path={tiny_model_dir}",
                 f"hydra.sweep.dir={sweep}", *FAST)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    (job,) = jobs(sweep).values()  # the sweep was not started again by a second process
    line = (job / "error.txt").read_text()
    assert "trainer.devices=2" in line and "in a multirun" in line and "hydra/launcher=slurm" in line


# -- what train.py does around a run, in this process (Hydra's run state set as train.py would find it) --------


@pytest.fixture
def hydra_job(tmp_path):
    """Sets Hydra's state of a job writing to tmp_path/<job>: ``start(*overrides)`` returns the config."""

    def start(*overrides: str, job: str = "run"):
        cfg = compose_with_hydra([f"hydra.sweep.dir={tmp_path}", *overrides])
        cfg.hydra.runtime.output_dir = str(tmp_path / job)
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield start
    HydraConfig.instance().cfg = None


def test_a_refused_single_run_prints_one_line_exits_2_and_removes_its_log_only_folder(hydra_job, tmp_path, capsys):
    hydra_job()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train.log").write_text("")
    with pytest.raises(SystemExit) as exit_:
        cli.refuse(ConfigError("perturbation.sigmas=[-1.0]: every sigma must be > 0"))
    assert exit_.value.code == cli.REFUSED == 2
    assert capsys.readouterr().err == "config error: perturbation.sigmas=[-1.0]: every sigma must be > 0\n"
    assert not (tmp_path / "run").exists()
    (tmp_path / "run").mkdir()  # a folder holding an earlier run is left alone
    (tmp_path / "run" / "results.json").write_text("{}")
    with pytest.raises(SystemExit):
        cli.refuse(ValueError("boom"))
    assert capsys.readouterr().err == "error: boom\n" and (tmp_path / "run" / "results.json").exists()


def test_a_refused_sweep_job_writes_its_reason_and_the_sweep_names_it(hydra_job, tmp_path):
    cfg = hydra_job("hydra.mode=MULTIRUN", job="0_seed=1")
    assert cli.in_multirun() and cli.refuse(ConfigError("seed=x: bad")) is None  # the sweep goes on
    assert (tmp_path / "0_seed=1" / cli.ERROR_FILE).read_text() == "config error: seed=x: bad\n"
    (tmp_path / "1_seed=2").mkdir()
    try:
        cli.SweepStatus().on_multirun_end(cfg)
        assert cli.SweepStatus.failed == [tmp_path / "0_seed=1"]
    finally:
        cli.SweepStatus.failed = []
    hydra_job("hydra.mode=MULTIRUN", job="0_seed=1")
    cli.clear_error()  # the same job run again starts without the old reason
    assert not (tmp_path / "0_seed=1" / cli.ERROR_FILE).exists()


def test_hydra_files_are_written_for_an_accepted_run(hydra_job, tmp_path):
    hydra_job("seed=3")
    cli.save_hydra_files(compose_config(["seed=3", "output_dir=/tmp/unused"]), cli.job_dir())
    saved = tmp_path / "run" / ".hydra"
    assert yaml.safe_load((saved / "config.yaml").read_text())["seed"] == 3
    assert yaml.safe_load((saved / "overrides.yaml").read_text()) == ["output_dir=/tmp/unused", "seed=3"]
    assert yaml.safe_load((saved / "hydra.yaml").read_text())["hydra"]["runtime"]["output_dir"] == str(tmp_path / "run")
