"""Everything a run checks and builds before it writes anything: inputs, loggers, Fabric, resume.

A bad value found here stops the run with one line naming the key (``ConfigError``, exit status 2)
and leaves nothing behind; ``remove_run_outputs`` clears a fresh folder when a later check refuses.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from lightning.fabric import Fabric
from transformers import PreTrainedTokenizerBase

from corp.config import Config, ConfigError, flatten, in_multirun, result_neutral, to_plain
from corp.consolidate import build_operator
from corp.consolidate.base import Operator
from corp.errors import Interrupted
from corp.models.loading import ModelConfig, check_weights, hub_source, load_tokenizer, meta_model, resolve
from corp.observe.callbacks import Callbacks, build_callbacks
from corp.observe.loggers import WANDB_RUN_FILE
from corp.perturb.direction import Direction
from corp.perturb.space import select_parameters
from corp.tasks.base import SPLITS, Example, Task, build_task

log = logging.getLogger("corp.run")


def build_loggers(typed: Config) -> Callbacks:
    """The loggers of ``logger.*``, built before anything is written."""
    try:
        return Callbacks(build_callbacks(typed.logger))
    except ValueError as err:
        raise ConfigError(str(err)) from None


# what a run writes into its folder (besides Hydra's log): removed when a fresh run is refused
RUN_OUTPUTS = ("config.json", ".hydra", "results.json", "direction.json", "samples.jsonl", "rounds.jsonl", "plots",
               "model", "model.tmp", "checkpoints", "populations", "evals", "wandb", WANDB_RUN_FILE, "csv",
               "tensorboard", "mlruns", "profiler")  # fmt: skip


def remove_run_outputs(out: Path) -> None:
    """Delete what this run wrote into ``out``; the folder itself goes too if nothing else is left."""
    for name in RUN_OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def build_fabric(typed: Config) -> Fabric:
    """Lightning Fabric built from ``trainer.*`` with its ``_target_``; a device that is not there is a
    config error, found before anything is written."""
    from hydra.utils import instantiate

    t = typed.trainer
    kwargs = {k: v for k, v in asdict(t).items() if k != "num_threads"}  # torch's setting, not Fabric's
    try:
        fabric = instantiate(kwargs)
    except Exception as err:  # Hydra wraps the cause: keep its first line
        cause = err.__cause__ or err
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise ConfigError(
            f"trainer.accelerator={t.accelerator!r} trainer.devices={t.devices} trainer.strategy={t.strategy!r}: "
            f"{first} (trainer=cpu runs anywhere)"
        ) from None
    if not isinstance(fabric, Fabric):
        raise ConfigError(f"trainer._target_={t._target_!r}: builds a {type(fabric).__name__}, not a lightning Fabric")
    if _starts_processes(fabric) and in_multirun():
        raise ConfigError(
            f"trainer.devices={t.devices} with trainer.strategy={t.strategy!r} in a multirun: Lightning would start "
            "each extra process by re-running the whole sweep's command line. Run such jobs one at a time (no -m), "
            "under torchrun or srun, or with hydra/launcher=slurm and hydra.launcher.tasks_per_node="
            f"{t.devices} (SLURM starts the processes)"
        )
    return fabric


def _starts_processes(fabric: Fabric) -> bool:
    """Whether ``fabric.launch()`` would start the other ranks itself by re-running ``sys.argv``."""
    from lightning.fabric.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    launcher = getattr(fabric._strategy, "launcher", None)
    return (
        isinstance(launcher, _SubprocessScriptLauncher)
        and not launcher.cluster_environment.creates_processes_externally
    )


@contextmanager
def interrupts_raise():
    """SIGINT and SIGTERM raise ``Interrupted`` where the run is, so that what it scored so far is
    saved on the way out (a rerun continues from there). Only the main thread can take signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@dataclass(frozen=True)
class EvalTarget:
    """What ``mode=eval`` scores next to the base: a saved direction (a point of the base model's
    parameter space) or another model altogether."""

    name: str  # the direction file or model folder, as results.json names it
    direction: Direction | None = None
    model: str | None = None


@dataclass
class Inputs:
    """Everything a run reads, loaded (and so checked) before it writes anything."""

    task: Task
    splits: dict[str, list[Example]]
    operator: Operator | None  # mode=train
    source: Path | str  # what from_pretrained loads for model.name_or_path
    tokenizer: PreTrainedTokenizerBase
    evaluated: EvalTarget | None = None  # mode=eval


def prepare(typed: Config) -> Inputs:
    try:
        task = build_task(typed.task)
        splits = task.splits({s: getattr(typed.task, f"{s}_size") for s in SPLITS}, typed.task.data_seed)
        operator = build_operator(typed) if typed.mode == "train" else None
        if typed.population.load and not Path(typed.population.load).exists():
            raise ValueError(f"population.load={typed.population.load}: no such file or directory")
        evaluated = eval_target(typed) if typed.mode == "eval" else None
    except (ValueError, OSError) as err:
        raise ConfigError(str(err)) from None
    try:
        source = _resolve_model(typed.model)
        tokenizer = load_tokenizer(typed.model, source)
        check_model(typed, source)
    except (ValueError, FileNotFoundError) as err:  # these name the key already
        raise ConfigError(str(err).strip("'\"")) from None
    except OSError as err:  # a hub id that cannot be fetched
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"model.name_or_path={typed.model.name_or_path!r}: cannot load it ({first})") from None
    return Inputs(task, splits, operator, source, tokenizer, evaluated)


def check_model(typed: Config, source: Path | str) -> None:
    """The model's files readable and ``perturbation.include``/``exclude`` selecting some of its
    parameters, checked without loading any weights."""
    p = typed.perturbation
    check_weights(typed.model, source)
    select_parameters(meta_model(source), p.include, p.exclude)


def _resolve_model(model: ModelConfig) -> Path | str:
    """``resolve``, with a hub id checked by ``hub_source`` and an unreadable GGUF file (truncated, corrupt)
    refused naming the key and the file."""
    name = model.name_or_path
    if not (name == "embedded" or name.endswith(".gguf")):
        source = resolve(model)
        return hub_source(name) if isinstance(source, str) else source
    try:
        return resolve(model)
    except FileNotFoundError:
        raise
    except Exception as err:  # the GGUF reader fails deep inside (reshape, struct, key errors)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"model.name_or_path={name!r}: cannot read the GGUF file, it is truncated or corrupt "
            f"({type(err).__name__}: {first[:200]})"
        ) from None


def check_resume(typed: Config, out: Path) -> bool:
    """True when ``out`` holds an earlier attempt of this same run, which is then continued.

    ``resume=never`` clears what an earlier attempt left there instead."""
    saved = out / "config.json"
    if not saved.exists():
        return False
    if typed.resume == "never":
        for stale in ("checkpoints", "populations", "evals"):
            shutil.rmtree(out / stale, ignore_errors=True)
        return False
    try:
        old = json.loads(saved.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{saved}: unreadable ({err}); delete it or run with resume=never") from None
    old, new = flatten(old), flatten(to_plain(typed))
    changed = sorted({k for k in set(old) | set(new) if not result_neutral(k) and old.get(k) != new.get(k)})
    if changed:
        older = " (saved by an older version? python -m corp.migrate <folder> fills its new keys)" if any(
            k not in old for k in changed) else ""  # fmt: skip
        raise ConfigError(
            f"output_dir={out} holds a run with a different config (changed: {', '.join(changed)}){older}; "
            "resume=auto only continues the same run: use another output folder or resume=never"
        )
    last = out / "checkpoints" / "last.json"
    if last.exists():
        try:
            state = json.loads(last.read_text())
            Direction.from_json(state["committed"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(
                f"{last}: corrupt checkpoint ({type(err).__name__}: {err}); delete it "
                "(the saved scores are kept and replayed) or run with resume=never"
            ) from None
    log.info("resume=auto: continuing the run in %s from its saved scores", out)
    return True


def eval_target(typed: Config) -> EvalTarget:
    """The saved direction (file or run folder) or exported model that ``mode=eval`` scores."""
    ev = typed.eval
    if bool(ev.direction) == bool(ev.model):
        raise ValueError("mode=eval needs exactly one of eval.direction=<direction.json or run folder> "
                         "and eval.model=<exported model folder>")  # fmt: skip
    if ev.model:
        if not (Path(ev.model) / "config.json").exists():
            raise ValueError(f"eval.model={ev.model}: not a model folder (no config.json)")
        return EvalTarget(ev.model, model=ev.model)
    path = Path(ev.direction)
    path = path / "direction.json" if path.is_dir() else path
    if not path.is_file():
        raise ValueError(f"eval.direction={ev.direction}: no such file (give a direction.json or a run folder)")
    try:
        saved = json.loads(path.read_text())
        direction = Direction.from_json(saved["direction"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"eval.direction={path}: not a direction.json ({type(err).__name__}: {err})") from None
    p = typed.perturbation
    expected = {"model": typed.model.name_or_path, "noise_mode": p.noise_mode, "include": list(p.include),
                "exclude": list(p.exclude)}  # fmt: skip
    keys = {"model": "model.name_or_path", "noise_mode": "perturbation.noise_mode",
            "include": "perturbation.include", "exclude": "perturbation.exclude"}  # fmt: skip
    wrong = [f"{keys[k]}={expected[k]!r} but the direction was made with {saved.get(k)!r}"
             for k in expected if saved.get(k) != expected[k]]  # fmt: skip
    if wrong:
        raise ValueError(f"eval.direction={path}: " + "; ".join(wrong))
    return EvalTarget(str(path), direction=direction)
