"""The loggers a run can write to: callbacks registered in ``LOGGERS`` under the name ``logger=`` selects,
each with a config dataclass holding its ``logger.<name>.*`` keys and their defaults. Several at once:
``logger=[wandb,csv]``; a key of one: ``logger.wandb.tags=[a,b]``.

W&B goes through the ``wandb`` client directly (Fabric ships no W&B logger; the Trainer's prints a
warning on every run). CSV and TensorBoard are Lightning Fabric's loggers; MLflow is its own client.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corp.observe import logged
from corp.observe.callbacks import (
    LOGGERS,
    Callback,
    EvalScored,
    PointScored,
    RoundEnded,
    RunEnded,
    RunStarted,
    SamplesReady,
)
from corp.observe.reward_parts import RoundParts, point_values
from corp.observe.wandb_files import Logged, logged_before

WANDB_RUN_FILE = "wandb_run.json"  # in the run folder: the W&B run id, so that a resume continues that run


def _require(package: str, *modules: str) -> None:
    """Refuse a logger whose package is missing (any one of ``modules``, default the package, will do)."""
    import importlib.util

    if not any(importlib.util.find_spec(m) is not None for m in modules or (package,)):
        raise ImportError(f"needs the {package!r} package (pip install {package})")


@dataclass
class WandbConfig:
    """``logger=wandb``: the W&B run's settings."""

    project: str = "corp"
    entity: str | None = None  # your W&B user or team; null: your default entity
    name: str | None = None  # the run's name; null: the run folder's name
    group: str | None = None  # conf/logger/wandb.yaml: a multirun's jobs are grouped by the sweep folder's name
    tags: list[str] = field(default_factory=list)  # e.g. logger.wandb.tags=[baseline,countdown]
    job_type: str | None = None  # null: the run's mode (train or eval)
    notes: str | None = None
    offline: bool | None = None  # null: offline unless a W&B API key is configured; sync later with `wandb sync`
    log_model: bool = False  # true: also log model/ as an artifact (results.json and direction.json always are)


@LOGGERS.register("wandb")
class WandbLogger(Callback):
    """One W&B run per run folder. Live: one history step per scored member or candidate (x-axis
    ``point``), per round (x-axis ``round``) the scalars, tables and histograms that recur, and the best
    member's sample completions. A value seen in a single round is never a one-point chart: every round's
    scalars are also in one table, ``rounds/metrics`` (a row per round), logged when the run ends. The
    summary holds the headline only (``test/accuracy``, ``test/base_accuracy``, ``test/gain``,
    ``probe/accuracy``, their standard errors), the budget and the throughput; the config is the run's
    config. At the end ``results.json`` and ``direction.json`` are logged as an artifact (type
    ``direction``: with the base model, the direction is the trained model), and with ``log_model``
    the exported ``model/`` too (type ``model``; off by default, for its size)."""

    config_class = WandbConfig

    def __init__(self, cfg: WandbConfig) -> None:
        _require("wandb")
        _check_wandb_mode()
        self.cfg = cfg
        self.run: Any = None
        self.out: Path | None = None
        self._logged = Logged()  # what earlier attempts got into W&B: not logged again
        self._step = 0  # W&B's _step, continued across attempts
        self._point = 0
        self._last_round = 0
        self._once: dict[str, tuple[int, float]] = {}  # round scalars seen in one round so far
        self._recurring: set[str] = set()
        self._best: PointScored | None = None  # the round's best member, for its sample table
        self._round_rows: dict[int, dict[str, Any]] = {}  # every round's scalars, for the rounds/metrics table
        self._parts = RoundParts()

    def on_run_start(self, rec: RunStarted) -> None:
        import wandb

        self.out = rec.output_dir
        saved = rec.output_dir / WANDB_RUN_FILE
        state = json.loads(saved.read_text()) if rec.resumed and saved.exists() else {}
        run_id = state.get("id") or uuid.uuid4().hex[:8]
        if state:  # before this attempt's own segment exists
            self._logged = logged_before(rec.output_dir / "wandb", run_id)
        offline = self.cfg.offline
        if offline is None:  # online only when the user has a key configured
            offline = not (os.environ.get("WANDB_API_KEY") or _netrc_has_wandb())
        c = self.cfg
        # offline, no server says the run resumed: the segment records it itself
        settings = wandb.Settings(resumed=True) if offline and state else None
        self.run = wandb.init(project=c.project, entity=c.entity, name=c.name or rec.output_dir.name, group=c.group,
                              tags=list(c.tags), job_type=c.job_type or rec.mode, notes=c.notes,
                              dir=str(rec.output_dir), id=run_id, resume="allow", config=rec.config,
                              mode="offline" if offline else "online", settings=settings)  # fmt: skip
        self._step = max(self._logged.last_step + 1, self.run.step)
        self._save_state(run_id)
        for axis in ("point", "round"):
            self.run.define_metric(axis, summary="none")
        for prefix in ("member", "candidate"):
            self.run.define_metric(f"{prefix}/*", step_metric="point", summary="none")
        self.run.define_metric("example_evals", step_metric="point", summary="none")
        self.run.define_metric("rewards/*", step_metric="point", summary="none")

    def _save_state(self, run_id: str) -> None:
        tmp = self.out / (WANDB_RUN_FILE + ".tmp")
        tmp.write_text(json.dumps({"id": run_id}))
        os.replace(tmp, self.out / WANDB_RUN_FILE)

    def _log(self, row: dict[str, Any]) -> None:
        """One history row at the next ``_step``, committed at once; what an earlier attempt of the run
        already got into W&B is left out (a resume replays the run from its first point)."""
        row = self._logged.new_part(row)
        if row:
            self.run.log(row, step=self._step, commit=True)
            self._step += 1

    def on_point(self, rec: PointScored) -> None:
        self._point += 1
        self._parts.add(rec)
        if rec.kind == "member" and not rec.failed and (self._best is None or rec.reward > self._best.reward):
            self._best = rec
        row = {"point": self._point, "round": rec.round, "example_evals": rec.example_evals,
               f"{rec.kind}/reward": rec.reward, f"{rec.kind}/accuracy": rec.accuracy, **point_values(rec)}  # fmt: skip
        if rec.sigma is not None:
            row[f"{rec.kind}/sigma"] = rec.sigma
        self._log(row)

    def on_eval(self, rec: EvalScored) -> None:
        prefix = f"{rec.split}/base_" if rec.label == "base" else f"{rec.split}/"
        self.run.summary[prefix + "accuracy"] = rec.accuracy

    def on_round_end(self, rec: RoundEnded) -> None:
        metrics = {**rec.metrics, **self._parts.pop()}
        self._round_rows[rec.round] = {"round": rec.round, **metrics}
        row: dict[str, Any] = {}
        for key, value in metrics.items():
            if key in self._recurring:
                row[key] = value
            elif key in self._once:  # a second round has it: a curve after all, from its first value on
                first_round, first = self._once.pop(key)
                self._recurring.add(key)
                self.run.define_metric(key, step_metric="round", summary="none")
                self._log({"round": first_round, key: first})
                row[key] = value
            else:
                self._once[key] = (rec.round, value)
        best, self._best = self._best, None
        content = logged.round_content(rec.entry)
        if best is not None and best.samples:
            rows = [{"member": best.index, "sigma": best.sigma, **s} for s in best.samples]
            content["samples/round_best_member"] = logged.table(rows)
        for key in content:
            self.run.define_metric(key, step_metric="round", summary="none")
        self._log({"round": rec.round, **row, **content})
        self._last_round = rec.round

    def on_samples(self, rec: SamplesReady) -> None:
        self.run.define_metric(rec.key, step_metric="round", summary="none")
        self._log({"round": rec.round, rec.key: logged.table(rec.rows)})

    def on_run_end(self, rec: RunEnded) -> None:
        if self._round_rows:
            self.run.define_metric("rounds/metrics", step_metric="round", summary="none")
            rows = [self._round_rows[r] for r in sorted(self._round_rows)]
            self._log({"round": max(self._round_rows), "rounds/metrics": logged.table(rows)})
        self.run.summary.update(logged.headline(rec.results))
        self._log_artifacts()
        if rec.plots:
            logged.log_images(self.run, rec.plots, self._last_round, self._log)

    def _log_artifacts(self) -> None:
        import wandb

        files = [self.out / name for name in ("results.json", "direction.json") if (self.out / name).exists()]
        if files:
            art = wandb.Artifact(f"{self.run.id}-direction", type="direction")
            for f in files:
                art.add_file(str(f))
            self.run.log_artifact(art)
        if self.cfg.log_model and (self.out / "model").is_dir():
            art = wandb.Artifact(f"{self.run.id}-model", type="model")
            art.add_dir(str(self.out / "model"))
            self.run.log_artifact(art)

    def finish(self, status: str) -> None:
        if self.run is not None:
            if status == "interrupted":
                self.run.mark_preempting()  # resumable: a rerun continues this run
            self.run.finish(exit_code=0 if status == "success" else 1)
            self.run = None


WANDB_MODES = ("online", "offline", "disabled", "shared", "dryrun", "run")  # what wandb takes in WANDB_MODE


def _check_wandb_mode() -> None:
    """A ``WANDB_MODE`` that wandb would refuse (an empty one, a typo) stops the run before it starts,
    rather than letting it go on without the logger the user asked for."""
    mode = os.environ.get("WANDB_MODE")
    if mode is not None and mode not in WANDB_MODES:
        raise ValueError(f"WANDB_MODE={mode!r} (environment): allowed: {', '.join(WANDB_MODES)}, or unset it")


def _netrc_has_wandb() -> bool:
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


class _FabricScalars(Callback):
    """Round scalars (x-axis: round) and, where ``points`` is set, member and candidate rewards (x-axis:
    the point's number) to one of Lightning Fabric's loggers, created in the run folder."""

    points = False

    def __init__(self, cfg: object) -> None:
        self.cfg = cfg
        self.logger: Any = None
        self._point = 0
        self._parts = RoundParts()

    def make(self, out: Path) -> Any:
        raise NotImplementedError

    def on_run_start(self, rec: RunStarted) -> None:
        self.logger = self.make(rec.output_dir)

    def on_point(self, rec: PointScored) -> None:
        self._point += 1
        self._parts.add(rec)
        if self.points and not rec.replayed:
            self.logger.log_metrics({f"{rec.kind}/reward": rec.reward, f"{rec.kind}/accuracy": rec.accuracy,
                                     **point_values(rec)}, step=self._point)  # fmt: skip

    def on_round_end(self, rec: RoundEnded) -> None:
        self.logger.log_metrics({**rec.metrics, **self._parts.pop()}, step=rec.round)

    def finish(self, status: str) -> None:
        if self.logger is not None:
            self.logger.finalize("success" if status == "success" else "failed")
            self.logger = None


@dataclass
class CsvConfig:
    """``logger=csv``: no keys."""


@LOGGERS.register("csv")
class CsvLogger(_FabricScalars):
    """``csv/metrics.csv``: one row per round."""

    config_class = CsvConfig

    def make(self, out: Path) -> Any:
        from lightning.fabric.loggers import CSVLogger

        return CSVLogger(root_dir=str(out), name="csv", version="")


@dataclass
class TensorBoardConfig:
    """``logger=tensorboard``: no keys."""


@LOGGERS.register("tensorboard")
class TensorBoardLogger(_FabricScalars):
    """``tensorboard/``: round scalars and every scored point (needs ``pip install tensorboard``)."""

    config_class = TensorBoardConfig
    points = True

    def __init__(self, cfg: TensorBoardConfig) -> None:
        _require("tensorboard", "tensorboard", "tensorboardX")
        super().__init__(cfg)

    def make(self, out: Path) -> Any:
        from lightning.fabric.loggers import TensorBoardLogger as Fabric

        return Fabric(root_dir=str(out), name="tensorboard", version="")


@dataclass
class MlflowConfig:
    """``logger=mlflow``: where the MLflow run goes."""

    experiment: str = "corp"
    tracking_uri: str | None = None  # null: <run folder>/mlruns; e.g. http://localhost:5000
    run_name: str | None = None  # null: the run folder's name


@LOGGERS.register("mlflow")
class MlflowLogger(Callback):
    """One MLflow run: round scalars (step: round), the headline and the config's top keys as params
    (needs ``pip install mlflow``)."""

    config_class = MlflowConfig

    def __init__(self, cfg: MlflowConfig) -> None:
        _require("mlflow")
        self.experiment, self.tracking_uri, self.run_name = cfg.experiment, cfg.tracking_uri, cfg.run_name
        self.client: Any = None
        self.run_id: str | None = None

    def on_run_start(self, rec: RunStarted) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(self.tracking_uri or (rec.output_dir / "mlruns").resolve().as_uri())
        found = self.client.get_experiment_by_name(self.experiment)
        exp = found.experiment_id if found else self.client.create_experiment(self.experiment)
        self.run_id = self.client.create_run(exp, run_name=self.run_name or rec.output_dir.name).info.run_id
        for key in ("seed", "mode"):
            self.client.log_param(self.run_id, key, rec.config.get(key))

    def on_round_end(self, rec: RoundEnded) -> None:
        for key, value in rec.metrics.items():
            self.client.log_metric(self.run_id, key, value, step=rec.round)

    def on_run_end(self, rec: RunEnded) -> None:
        for key, value in logged.headline(rec.results).items():
            self.client.log_metric(self.run_id, key, value)

    def finish(self, status: str) -> None:
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, "FINISHED" if status == "success" else "FAILED")
