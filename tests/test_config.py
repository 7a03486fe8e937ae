"""Config composition of every group, and bad values stopping the run before any work."""

import json
import os
import re
import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError

from corp.config import Config, PerturbationConfig, TrainerConfig, to_plain, validate
from corp.consolidate import OPERATORS
from corp.errors import UserError
from corp.models.loading import ModelConfig
from corp.observe.callbacks import LOGGERS
from corp.run import run
from corp.tasks.base import TASKS
from tests.conftest import ROOT, compose_config

CONF = ROOT / "conf"
GROUPS = ("model", "task", "perturbation", "consolidation", "logger", "trainer")


def stated(group: str, option: str) -> dict:
    """The values conf/<group>/<option>.yaml sets, with those of the sibling file it extends."""
    raw = OmegaConf.to_container(OmegaConf.load(CONF / group / f"{option}.yaml"), resolve=False)
    parents = [d for d in raw.pop("defaults", []) if isinstance(d, str) and (CONF / group / f"{d}.yaml").exists()]
    return {k: v for p in parents for k, v in stated(group, p).items()} | raw


def schema_class(group: str, node) -> type:
    if group == "task":
        return TASKS[node.name].config_class
    if group == "consolidation":
        return OPERATORS[node.name].config_class
    return {"model": ModelConfig, "perturbation": PerturbationConfig, "trainer": TrainerConfig}[group]


@pytest.mark.parametrize("group,option", [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))])
def test_every_group_option_composes_to_its_schema_and_its_own_values(group, option):
    """Each option is its schema's defaults with the file's own values on top, typed and checked."""
    node = getattr(validate(compose_config([f"{group}={option}", "output_dir=/tmp/x"])), group)
    values = stated(group, option)
    if group == "logger":  # name -> that logger's config; a file names the loggers it selects
        assert set(node) == ({option} if option != "none" else set())
        values = OmegaConf.to_container(OmegaConf.create(values), resolve=True)  # ${sweep_name:}: None here
        for name, entry in node.items():
            cls = LOGGERS[name].config_class
            assert type(entry) is cls
            assert to_plain(entry) == to_plain(cls()) | values.get(name, {})
        return
    cls = schema_class(group, node)
    assert type(node) is cls
    assert to_plain(node) == to_plain(cls()) | values


def test_the_default_run_is_the_schema_defaults(default_config):
    """`python train.py` runs what the dataclasses say: a test building CorpConfig() or ModelConfig() tests
    the settings users run. Only output_dir and the logger come from conf/config.yaml."""
    task = TASKS[default_config.task.name].config_class()
    operator = OPERATORS[default_config.consolidation.name].config_class()
    expected = Config(task=task, consolidation=operator, output_dir=default_config.output_dir,
                      logger=default_config.logger)  # fmt: skip
    assert to_plain(default_config) == to_plain(expected)
    assert set(default_config.logger) == {"wandb"}


def test_overrides_reach_the_typed_config():
    cfg = validate(compose_config(["perturbation.population_size=4", "task.support_size=8", "seed=3",
                                   "perturbation.sigmas=[0.01]", "output_dir=/tmp/x"]))  # fmt: skip
    assert (cfg.perturbation.population_size, cfg.task.support_size, cfg.seed) == (4, 8, 3)
    assert cfg.perturbation.sigmas == [0.01]


@pytest.mark.parametrize(
    "override,key",
    [
        ("perturbation.sigmas=[-0.001]", "perturbation.sigmas"),
        ("perturbation.sigmas=[]", "perturbation.sigmas"),
        ("perturbation.population_size=1", "perturbation.population_size"),
        ("task.support_size=0", "task.support_size"),
        ("consolidation.quantiles=[1.5]", "consolidation.quantiles"),
        ("consolidation.quantiles=[0.0]", "consolidation.quantiles"),
        ("model.dtype=float8", "model.dtype"),
        ("model.batch_size=-1", "model.batch_size"),
        ("+logger.mine.project=x", "logger.mine is not a registered logger; allowed: csv, mlflow, tensorboard, wandb"),
    ],
)
def test_invalid_values_name_the_key(override, key):
    with pytest.raises(ValueError, match=re.escape(key)):
        validate(compose_config([override, "output_dir=/tmp/x"]))


def test_unknown_key_is_refused_at_composition():
    with pytest.raises((ConfigCompositionException, ConfigKeyError), match="not_a_key"):
        compose_config(["perturbation.not_a_key=1"])


def test_population_too_small_for_the_quantile_is_refused():
    with pytest.raises(ValueError, match="population_size"):
        validate(compose_config(["perturbation.population_size=2", "consolidation.quantiles=[0.9]",
                                 "output_dir=/tmp/x"]))  # fmt: skip


@pytest.mark.slow
def test_cli_stops_before_any_work_with_the_key_named(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "perturbation.sigmas=[-1.0]", f"hydra.run.dir={out}"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "perturbation.sigmas" in proc.stderr
    assert not out.exists()  # not even hydra's own files are left behind


def contents(out) -> dict | None:
    """Every file below ``out`` with its bytes; None when there is no ``out``."""
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} if out.exists() else None


def cli_error(tmp_path, *overrides, env: dict | None = None) -> str:
    out = tmp_path / "run"
    before = contents(out)
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={out}", *overrides],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env={**os.environ, **(env or {})})  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert contents(out) == before  # nothing new written, nothing changed
    return proc.stderr.strip().splitlines()[-1]


def run_error(tmp_path, *overrides) -> str:
    """The refusal `run` raises (train.py prints it as one line and exits 2: the slow test above)."""
    out = tmp_path / "run"
    before = contents(out)
    with pytest.raises(UserError) as refused:
        run(compose_config([f"output_dir={out}", "logger=none", *overrides]))
    assert contents(out) == before  # nothing new written, nothing changed
    return str(refused.value)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["model.name_or_path=/no/such/model"], "model.name_or_path='/no/such/model'"),
        (["task=countdown", "task.max_number=20", "task.test_size=600"], "task.test_size=600"),  # 562 puzzles exist
        (["population.load=/no/such/folder"], "population.load=/no/such/folder"),
        (["mode=eval"], "eval.direction"),
        (["mode=eval", "eval.direction=/no/such/direction.json"], "eval.direction=/no/such/direction.json"),
        (["resume=maybe"], "resume='maybe'"),
        # a name no registry holds: one line listing the names that exist
        (["task.name=nope"], "task.name='nope' is not a registered task; allowed: arithmetic, countdown, custom,"),
        (["consolidation.name=nope"], "consolidation.name='nope' is not a registered operator; allowed: corp, es,"),
        (["+logger.mine.project=x"], "logger.mine is not a registered logger; allowed: csv, mlflow, tensorboard,"),
        (["logger=none", "+logger.csv.every=2"], "logger.csv: CsvConfig.__init__() got an unexpected keyword"),
    ],
)
def test_bad_inputs_stop_before_any_output_naming_the_key(tmp_path, overrides, expected):
    assert expected in run_error(tmp_path, *overrides)


@pytest.mark.slow
def test_an_unknown_hub_id_is_refused_naming_the_key(tmp_path):
    hub_id = "no-such-org/no-such-model"
    offline = {"HF_HUB_OFFLINE": "1"}  # without a network the hub client retries for about a minute first
    assert f"model.name_or_path='{hub_id}'" in cli_error(tmp_path, f"model.name_or_path={hub_id}", env=offline)


def test_corrupt_checkpoint_is_refused_naming_the_file(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    cfg = compose_config([f"output_dir={out}", "logger=none"])
    (out / "config.json").write_text(json.dumps(to_plain(validate(cfg))))
    (out / "checkpoints" / "last.json").write_text('{"round": 0, "committed": {"seeds": [1], "coe')
    message = run_error(tmp_path)
    assert "last.json: corrupt checkpoint" in message and "resume=never" in message
