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

from corp.config import job_dirname
from tests.conftest import ROOT, TINY_BUDGET

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
FAST = [*TINY_BUDGET, "consolidation.stage2_rounds=0", "task.max_new_tokens=4", "export_model=false",
        "trainer.num_threads=1", "logger=none"]  # fmt: skip


def train(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**ENV, **(env or {})})  # fmt: skip


def jobs(sweep: Path) -> dict[int, Path]:
    return {int(p.name.split("_")[0]): p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit()}


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
    for option in ("experiment=compare", "debug=smoke"):
        proc = train(option, "--cfg", "job")
        assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = yaml.safe_load(train("debug=smoke", "--cfg", "job").stdout)
    assert cfg["perturbation"]["population_size"] == 4 and cfg["task"]["test_size"] == 8
    assert cfg["consolidation"]["stage2_rounds"] == 1  # CoRP's own smallest settings
    other = yaml.safe_load(train("debug=smoke", "consolidation=randopt", "--cfg", "job").stdout)
    assert other["consolidation"]["name"] == "randopt" and other["perturbation"]["population_size"] == 4
    compare = yaml.safe_load(train("experiment=compare", "--cfg", "hydra").stdout)
    assert compare["hydra"]["mode"] == "MULTIRUN"


def test_cfg_job_resolve_prints_the_resolved_config():
    proc = train("--cfg", "job", "--resolve")
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["output_dir"].startswith("outputs/runs/") and cfg["output_dir"].endswith("_arithmetic_corp")


def test_help_lists_groups_and_keys_without_schema_entries():
    text = train("--help").stdout
    assert "gradient-free post-training" in text and "== Main keys" in text
    assert "task: arithmetic, countdown" in text and "logger: " in text and "debug: smoke" in text
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


def test_sweep_job_folders_use_the_short_names(tiny_model_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = train("-m", "consolidation.betas=[2.0],[5.0]", f"model.name_or_path={tiny_model_dir}",
                 f"hydra.sweep.dir={sweep}", *(o for o in FAST if "betas" not in o))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = sorted(p.name for p in jobs(sweep).values())  # every override of the job, fixed ones too
    assert [n[: len("0_betas=_2.0,")] for n in names] == ["0_betas=_2.0,", "1_betas=_5.0,"]
    assert all(len(n) <= 82 and len(n.rsplit(",", 1)[1]) == 8 for n in names)  # the items that fit + a hash


def test_multirun_with_processes_per_job_is_refused_in_one_line(tiny_model_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = train("-m", "seed=0", "trainer.devices=2", "trainer.strategy=ddp", f"model.name_or_path={tiny_model_dir}",
                 f"hydra.sweep.dir={sweep}", *FAST)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    (job,) = jobs(sweep).values()  # the sweep was not started again by a second process
    line = (job / "error.txt").read_text()
    assert "trainer.devices=2" in line and "in a multirun" in line and "hydra/launcher=slurm" in line


@pytest.mark.slow
def test_debug_smoke_is_a_complete_run(tmp_path):
    out = tmp_path / "smoke"
    proc = train("debug=smoke", f"hydra.run.dir={out}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("results.json", "direction.json", "config.json", "samples.jsonl", "rounds.jsonl",
                 "model/config.json", "plots/population_rewards.png", "checkpoints/last.json",
                 "populations/round_000.npz", ".hydra/config.yaml", "train.log"):  # fmt: skip
        assert (out / name).exists(), name
    assert list((out / "wandb").glob("offline-run-*"))
    res = json.loads((out / "results.json").read_text())
    assert res["test"]["n"] == 8 and res["budget"]["members_scored"] >= 4
