"""Multiruns through the launchers and the sweeper of conf/hydra/: joblib jobs in parallel, each its
own W&B run grouped by the sweep; an Optuna search that maximises probe accuracy; the SLURM config
(composed only: there is no SLURM here). Needs the `sweeps` extra (pip install -e '.[sweeps]')."""

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from corp.config import validate
from corp.observe.wandb_files import records as wandb_records
from tests.conftest import ROOT, TINY_BUDGET, compose_config, compose_with_hydra

pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="needs the sweeps extra")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the sweeps extra")
pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs the sweeps extra")

# one torch thread per job: on a shared, oversubscribed CPU two threads per tiny job run ~10x slower
FAST = [
    *TINY_BUDGET,
    "consolidation.stage2_rounds=0",
    "task.max_new_tokens=4",
    "export_model=false",
    "trainer.num_threads=1",
]


def multirun(args: list[str], sweep: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", f"hydra.sweep.dir={sweep}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(
        (p for p in sweep.iterdir() if (p / "results.json").exists()), key=lambda p: int(p.name.split("_")[0])
    )


@pytest.fixture(scope="module")
def parallel_sweep(tiny_model_dir, tmp_path_factory):
    """Two jobs at once through the joblib launcher, logged to W&B offline."""
    sweep = tmp_path_factory.mktemp("parallel") / "my_sweep"
    args = ["seed=0,1", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", f"model.name_or_path={tiny_model_dir}",
            "logger=wandb", "logger.wandb.offline=true", *FAST]  # fmt: skip
    proc = multirun(args, sweep, env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    return sweep, proc


@pytest.mark.slow
def test_joblib_launcher_runs_the_jobs_in_parallel(parallel_sweep):
    sweep, proc = parallel_sweep
    jobs = job_dirs(sweep)
    assert [j.name[:2] for j in jobs] == ["0_", "1_"]
    assert [json.loads((j / "results.json").read_text())["seed"] for j in jobs] == [0, 1]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    # Hydra writes .hydra/config.yaml as a job starts, the run writes results.json as it ends: the jobs overlap
    starts = [(j / ".hydra" / "config.yaml").stat().st_mtime for j in jobs]
    ends = [(j / "results.json").stat().st_mtime for j in jobs]
    assert max(starts) < min(ends)


@pytest.mark.slow
def test_each_job_is_its_own_wandb_run_grouped_by_the_sweep(parallel_sweep):
    sweep, _ = parallel_sweep
    run_ids = set()
    for job in job_dirs(sweep):
        (run_file,) = job.glob("wandb/offline-run-*/run-*.wandb")
        records = {r.WhichOneof("record_type"): r for r in wandb_records(run_file)}
        run = records["run"].run
        assert run.run_group == "my_sweep" and run.display_name == job.name and run.project == "corp"
        assert records["exit"].exit.exit_code == 0  # wandb.finish() closed the run
        assert json.loads((job / "config.json").read_text())["logger"]["wandb"]["group"] == "my_sweep"
        run_ids.add(run.run_id)
    assert len(run_ids) == 2


def test_wandb_group_is_the_sweep_only_in_a_multirun():
    try:
        single = compose_with_hydra(["logger=wandb"])
        HydraConfig.instance().set_config(single)
        assert single.logger.wandb.group is None
        multi = compose_with_hydra(["logger=wandb", "hydra.mode=MULTIRUN", "hydra.sweep.dir=/x/lr_search"])
        HydraConfig.instance().set_config(multi)
        assert multi.logger.wandb.group == "lr_search"
        named = compose_with_hydra(["logger=wandb", "hydra.mode=MULTIRUN", "logger.wandb.group=mine"])
        HydraConfig.instance().set_config(named)
        assert named.logger.wandb.group == "mine"
    finally:
        HydraConfig.instance().cfg = None
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):  # outside a Hydra run
        assert compose(config_name="config", overrides=["logger=wandb"]).logger.wandb.group is None


@pytest.mark.slow
def test_optuna_sweep_maximises_the_probe_accuracy(tiny_model_dir, tmp_path):
    sweep = tmp_path / "optuna"
    args = ["hydra/sweeper=corp_optuna", "hydra.sweeper.n_trials=2", "consolidation.betas=choice([2.0],[5.0])",
            f"model.name_or_path={tiny_model_dir}", "logger=none", "perturbation.sigmas=[0.5,1.0]",
            *(o for o in FAST if not o.startswith("consolidation.betas="))]  # fmt: skip
    proc = multirun(args, sweep)
    assert "Sampler: TPESampler" in proc.stdout + proc.stderr
    jobs = job_dirs(sweep)
    assert len(jobs) == 2
    probes = [json.loads((j / "results.json").read_text())["probe"]["final"] for j in jobs]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["name"] == "optuna" and best["best_value"] == max(probes)
    assert best["best_params"]["consolidation.betas"] in ("[2.0]", "[5.0]")  # sampled, not the fixed overrides
    assert "consolidation.quantiles" not in best["best_params"]


@pytest.mark.slow
def test_optuna_search_space_is_corp_hyper_parameters_and_every_choice_is_valid():
    sweeper = compose_with_hydra(["hydra/sweeper=corp_optuna"]).hydra.sweeper
    assert sweeper.direction == "maximize" and sweeper.sampler.seed == 0
    params = OmegaConf.to_container(sweeper.params)
    assert params and all(k.startswith("consolidation.") for k in params)
    for key, sweep in params.items():
        if not sweep.startswith("choice("):
            continue
        for option in _split_top_level(sweep[len("choice(") : -1]):  # valid at the smallest documented population
            validate(compose_config([f"{key}={option}", "perturbation.population_size=8", "output_dir=/tmp/unused"]))


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def test_slurm_launcher_config_composes():
    from hydra.utils import instantiate
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    cfg = compose_with_hydra(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    launcher = cfg.hydra.launcher
    assert set(launcher) == {f.name for f in fields(SlurmQueueConf)}  # the plugin's schema, nothing else
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1
    assert launcher.timeout_min == 240 and launcher.mem_gb == 64 and launcher.cpus_per_task == 8
    assert launcher.submitit_folder.endswith("/.submitit/%j")
    assert isinstance(instantiate(launcher), SlurmLauncher)  # builds it; submits nothing
    with pytest.raises(Exception, match="not_a_key"):
        compose_with_hydra(["hydra/launcher=slurm", "hydra.launcher.not_a_key=1"])
