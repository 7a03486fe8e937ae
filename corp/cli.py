"""What ``train.py`` does around a run inside Hydra: Hydra's config files written only for an accepted
run, refusals as one line (a failed job in a multirun, exit status 2 in a single run), and the
sweep's exit status."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from corp.config import in_multirun

log = logging.getLogger("corp")

ERROR_FILE = "error.txt"  # a refused multirun job's one-line reason, in its folder
REFUSED = 2  # exit status of a refused run, and of a sweep with refused jobs


def job_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def save_hydra_files(cfg: DictConfig, out: Path) -> None:
    """Hydra's ``.hydra/`` (config, hydra config, overrides), written once the run is accepted
    (``hydra.output_subdir`` is null, so Hydra does not write them before the run starts): a refused
    resume leaves the old run's copies as they were."""
    hydra_cfg = HydraConfig.get()
    target = out / ".hydra"
    target.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, target / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": OmegaConf.to_container(hydra_cfg)}), target / "hydra.yaml")
    OmegaConf.save(OmegaConf.create(OmegaConf.to_container(hydra_cfg.overrides.task)), target / "overrides.yaml")


def clear_error() -> None:
    """A job rerun into its old folder starts without the reason of an earlier refusal."""
    (job_dir() / ERROR_FILE).unlink(missing_ok=True)


def refuse(err: Exception) -> None:
    """Report a refused run in one line. A single run exits with status 2 and leaves nothing in its
    folder; a multirun job writes the line to its log and ``error.txt`` and returns, so the sweep goes
    on (an Optuna trial without a value is a failed trial)."""
    line = f"{'config error' if type(err).__name__ == 'ConfigError' else 'error'}: {err}"
    print(line, file=sys.stderr, flush=True)
    out = job_dir()
    if in_multirun():
        log.error(line)
        out.mkdir(parents=True, exist_ok=True)
        (out / ERROR_FILE).write_text(line + "\n")
        return
    _remove_log_only_folder(out)
    sys.exit(REFUSED)


def _remove_log_only_folder(out: Path) -> None:
    """Hydra opens the run folder (its log) before the run starts; a refused run leaves nothing. A folder
    holding anything else (an earlier run) is left alone."""
    if out.is_dir() and {p.name for p in out.iterdir()} <= {"train.log"}:
        for p in out.iterdir():
            p.unlink()
        out.rmdir()


class SweepStatus(Callback):
    """At the end of a multirun, names the refused jobs; ``failed`` then holds their folders, and
    ``train.py`` exits non-zero."""

    failed: list[Path] = []

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        SweepStatus.failed = sorted(p.parent for p in sweep.glob(f"*/{ERROR_FILE}"))
        if SweepStatus.failed:
            names = ", ".join(p.name for p in SweepStatus.failed)
            log.error("%d job(s) of the sweep were refused (see error.txt in each): %s", len(SweepStatus.failed), names)
