"""One run end to end: build from the config, evaluate the base, run the rounds,
evaluate the consolidated model, and write every output."""

from __future__ import annotations

import json
import logging
import resource
import shutil
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric import Fabric
from omegaconf import DictConfig

from corp.config import Config, ConfigError, result_neutral, to_plain, validate
from corp.consolidate import build_operator
from corp.consolidate.base import Ensemble, Scores
from corp.consolidate.vote import vote_accuracy
from corp.errors import Interrupted, RunFailed, UserError
from corp.loop import RoundLoop, atomic_write_json, contain_nonfinite, decode_totals
from corp.models.loading import ModelConfig, load_model, load_tokenizer, resolve, save_model
from corp.models.precision import compute_dtype, dtype_name, resolve_dtype, set_compute_dtype
from corp.observe.callbacks import (
    Callbacks,
    EvalScored,
    RunEnded,
    RunStarted,
    SamplesReady,
    build_callbacks,
)
from corp.observe.loggers import WANDB_RUN_FILE
from corp.perturb.direction import Direction
from corp.perturb.noise import NoiseSource
from corp.perturb.space import ParameterSpace
from corp.report.run_plots import draw_run_plots
from corp.scoring.scorer import Decoded, Scorer
from corp.store import Scored, ScoreStore, direction_key, save_scored
from corp.tasks.base import SPLITS, build_task

log = logging.getLogger(__name__)


def build_loggers(typed: Config) -> Callbacks:
    """The loggers of ``logger.*``, built with ``_target_`` before anything is written."""
    try:
        return Callbacks(build_callbacks(typed.logger))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def run(cfg: DictConfig | Config, on_start: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Post-train ``cfg.model`` on ``cfg.task`` with ``cfg.consolidation`` (or, with ``mode=eval``,
    evaluate a saved direction or model); returns results.json's content.

    ``on_start(output_dir)`` is called on rank 0 once the run is accepted, before it writes anything
    else (train.py saves Hydra's own config files there). A run refused for bad input, at the start or
    later (a reward function that raises, every point failed), raises a ``UserError`` and, if it started
    the folder, leaves nothing in it; an interrupted one (SIGINT, SIGTERM) saves what it scored."""
    typed = validate(cfg)  # every config error surfaces here, before any work
    start = time.perf_counter()
    out = Path(typed.output_dir)
    if typed.trainer.num_threads:
        torch.set_num_threads(typed.trainer.num_threads)
    inputs = _prepare(typed)  # data, operator, model files: checked before anything is written
    callbacks = build_loggers(typed)
    fabric = _fabric(typed)
    resumed = typed.mode == "train" and _check_resume(typed, out)
    if resumed and (out / "results.json").exists():  # finished: rerunning a sweep skips its done jobs
        results = json.loads((out / "results.json").read_text())
        log.info("%s already holds this finished run (resume=never redoes it)", out)
        _print_summary(results, out)
        return results
    fresh = not (out / "config.json").exists()
    if fabric.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", to_plain(typed))
        if on_start is not None:
            on_start(out)
    else:
        callbacks = Callbacks()  # only rank 0 observes

    status = "failed"
    try:
        with _interrupts_raise():
            # before any decoding: a dashboard shows the run from its first second, and a crash too
            callbacks.start(RunStarted(out, to_plain(typed), resumed, typed.mode))
            fabric.launch()
            if typed.mode == "eval":
                results = _evaluate_only(typed, fabric, inputs, out, start, callbacks)
            else:
                results = _run(typed, fabric, inputs, out, start, callbacks, resumed)
        status = "success"
        return results
    except UserError:
        status = "refused"
        raise
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:  # each run (also each multirun job) is closed, even on failure
        callbacks.finish(status)
        if status == "refused" and fresh and fabric.is_global_zero:
            remove_run_outputs(out)


# what a run writes into its folder (besides Hydra's log): removed when a fresh run is refused
RUN_OUTPUTS = ("config.json", ".hydra", "results.json", "direction.json", "samples.jsonl", "rounds.jsonl", "plots",
               "model", "model.tmp", "checkpoints", "populations", "evals", "wandb", WANDB_RUN_FILE, "csv",
               "tensorboard", "mlruns")  # fmt: skip


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


def _fabric(typed: Config) -> Fabric:
    """Lightning Fabric for ``trainer.*``; a device that is not there is a config error, found before
    anything is written."""
    t = typed.trainer
    try:
        fabric = Fabric(accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy)
    except (RuntimeError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"trainer.accelerator={t.accelerator!r} trainer.devices={t.devices} trainer.strategy={t.strategy!r}: "
            f"{first} (trainer=cpu runs anywhere)"
        ) from None
    if _starts_processes(fabric) and _in_multirun():
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


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@contextmanager
def _interrupts_raise():
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


@dataclass
class Inputs:
    """Everything a run reads, loaded (and so checked) before it writes anything."""

    task: Any
    splits: dict[str, list]
    operator: Any
    source: Path | str  # what from_pretrained loads for model.name_or_path
    tokenizer: Any
    evaluated: dict[str, Any] | None = None  # mode=eval: the direction file or model dir to score


def _prepare(typed: Config) -> Inputs:
    try:
        task = build_task(typed.task)
        splits = task.splits({s: getattr(typed.task, f"{s}_size") for s in SPLITS}, typed.task.data_seed)
        operator = build_operator(typed) if typed.mode == "train" else None
        if typed.population.load and not Path(typed.population.load).exists():
            raise ValueError(f"population.load={typed.population.load}: no such file or directory")
        evaluated = _eval_target(typed) if typed.mode == "eval" else None
    except (ValueError, OSError) as err:
        raise ConfigError(str(err)) from None
    try:
        source = _resolve_model(typed.model)
        tokenizer = load_tokenizer(typed.model, source)
    except (ValueError, FileNotFoundError) as err:  # these name the key already
        raise ConfigError(str(err).strip("'\"")) from None
    except OSError as err:  # a hub id that cannot be fetched
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"model.name_or_path={typed.model.name_or_path!r}: cannot load it ({first})") from None
    return Inputs(task, splits, operator, source, tokenizer, evaluated)


def _resolve_model(model: ModelConfig) -> Path | str:
    """``resolve``, with an unreadable GGUF file (truncated, corrupt) refused naming the key and the file."""
    name = model.name_or_path
    if not (name == "embedded" or name.endswith(".gguf")):
        return resolve(model)
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


def _check_resume(typed: Config, out: Path) -> bool:
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
    new = to_plain(typed)
    changed = sorted(k for k in set(old) | set(new) if not result_neutral(k) and old.get(k) != new.get(k))
    if changed:
        raise ConfigError(
            f"output_dir={out} holds a run with a different config (changed: {', '.join(changed)}); "
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


def _eval_target(typed: Config) -> dict[str, Any]:
    """The saved direction (file or run folder) or exported model that ``mode=eval`` scores."""
    ev = typed.eval
    if bool(ev.direction) == bool(ev.model):
        raise ValueError("mode=eval needs exactly one of eval.direction=<direction.json or run folder> "
                         "and eval.model=<exported model folder>")  # fmt: skip
    if ev.model:
        if not (Path(ev.model) / "config.json").exists():
            raise ValueError(f"eval.model={ev.model}: not a model folder (no config.json)")
        return {"model": ev.model}
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
    return {"direction": direction, "path": str(path)}


def _setup(typed: Config, fabric: Fabric, inputs: Inputs, out: Path):
    model, tokenizer = load_model(typed.model, fabric.device, inputs.source, inputs.tokenizer, compute=False)
    noise = NoiseSource(typed.perturbation.noise_mode)
    pert = typed.perturbation
    space = ParameterSpace(model, noise, pert.include, pert.exclude, pert.dense_cache, pert.noise_cache_mb)
    set_compute_dtype(model, resolve_dtype(typed.model.dtype, fabric.device))  # the space keeps fp32 masters
    space.restore()  # live weights: the compute-dtype rounding of the fp32 centre
    scorer = Scorer(model, tokenizer, inputs.task, inputs.splits, typed.model.chat_template, typed.model.batch_size)
    log.info(
        "model %s: %.1fM perturbed weights in %d tensors; task %s: %s",
        typed.model.name_or_path,
        space.dim / 1e6,
        len(space.params),
        inputs.task.name,
        ", ".join(f"{s}={len(v)}" for s, v in inputs.splits.items()),
    )
    store = ScoreStore(_store_context(typed, scorer), inputs.splits)
    return model, tokenizer, space, scorer, store


def _run(typed: Config, fabric: Fabric, inputs: Inputs, out: Path, start: float, callbacks: Callbacks, resumed: bool):
    model, tokenizer, space, scorer, store = _setup(typed, fabric, inputs, out)
    if typed.population.load:  # first, so that points this run took from others stay counted as reused
        store.load(typed.population.load, exclude=out)  # a sweep folder holds this run's folder too
    if resumed:  # this run's own earlier scores: replaying them is not reuse
        store.load(out, source="resumed")
    points = PointScorer(scorer, space, store, out, fabric)
    base = _score_splits(points, "base", callbacks)
    if callbacks:  # what the base model answers, before any training
        callbacks.samples(SamplesReady("samples/start", _sample_rows(scorer, base["test"])[: typed.log_samples], 0))
    loop = RoundLoop(fabric, space, scorer, inputs.operator, out, store, points.keys, typed.checkpoint_every_s,
                     callbacks, typed.log_samples)  # fmt: skip
    loop.run()
    if loop.decoded_points and loop.budget.failed_points == loop.decoded_points:
        raise RunFailed(f"{_reward_key(typed)}: every point scored in training ({loop.decoded_points}) had NaN or "
                        "infinite rewards, so every one failed; no result is written")  # fmt: skip
    final = _score_splits(points, "final", callbacks)
    ensemble = inputs.operator.test_ensemble()
    votes = _vote(points, ensemble) if ensemble is not None else None

    seconds = time.perf_counter() - start
    throughput = _throughput(decode_totals(fabric, scorer), seconds, fabric.world_size)
    results = _results(typed, inputs.task, base, final, loop, votes, seconds, throughput)
    if fabric.is_global_zero:
        _write_outputs(typed, out, space, model, tokenizer, scorer, base, final, loop, results, callbacks)
        _print_summary(results, out)
    return results


def _reward_key(typed: Config) -> str:
    """The setting that decides the rewards, for messages: the user's reward function, else the task."""
    reward_fn = getattr(typed.task, "reward_fn", None)
    return f"task.reward_fn={reward_fn!r}" if reward_fn else f"task={typed.task.name}"


def _evaluate_only(
    typed: Config, fabric: Fabric, inputs: Inputs, out: Path, start: float, callbacks: Callbacks
) -> dict[str, Any]:
    """``mode=eval``: the base and the saved direction or model on ``eval.splits``."""
    model, tokenizer, space, scorer, store = _setup(typed, fabric, inputs, out)
    if typed.population.load:
        store.load(typed.population.load)
    points = PointScorer(scorer, space, store, out, fabric)
    target = inputs.evaluated
    base = {s: points(s, "base_model") for s in typed.eval.splits}
    if "direction" in target:
        final = {s: points(s, "evaluated", target["direction"]) for s in typed.eval.splits}
        evaluated = target["path"]
    else:
        other, _ = load_model(ModelConfig(**{**asdict(typed.model), "name_or_path": target["model"]}), fabric.device)
        scorer.model = other
        final = {s: scorer.score(s) for s in typed.eval.splits}
        evaluated = target["model"]
    res: dict[str, Any] = {"mode": "eval", "evaluated": evaluated, "task": inputs.task.name,
                           "model": typed.model.name_or_path, "dtype": dtype_name(compute_dtype(scorer.model))}  # fmt: skip
    for s in typed.eval.splits:
        res[s] = _split_result(base[s], final[s])
    res["seconds"] = time.perf_counter() - start
    res["throughput"] = _throughput(decode_totals(fabric, scorer), res["seconds"], fabric.world_size)
    if fabric.is_global_zero:
        atomic_write_json(out / "results.json", res)
        callbacks.end(RunEnded(res))
        if "test" in typed.eval.splits:
            _write_samples(out / "samples.jsonl", scorer, base["test"], final["test"])
        lines = [f"evaluated {evaluated} on {inputs.task.name}", f"{'split':<8} {'n':>5} {'base':>8} {'evaluated':>10}"]
        lines += [f"{s:<8} {res[s]['n']:>5} {res[s]['base']:>8.3f} {res[s]['final']:>10.3f}" for s in typed.eval.splits]
        print("\n".join(["", *lines, f"outputs: {out.resolve()}", ""]))
    return res


def _store_context(typed: Config, scorer: Scorer) -> dict[str, Any]:
    """What, besides the examples, decides a model point's scores (see corp.store)."""
    p = typed.perturbation
    return {
        "model": {
            "name_or_path": typed.model.name_or_path,
            "dtype": _store_dtype(typed.model.dtype, scorer.model),
            "chat_template": typed.model.chat_template,
        },
        "batch_size": scorer.batch_size,  # left padding can flip rare greedy ties
        "noise": {"mode": p.noise_mode, "include": list(p.include), "exclude": list(p.exclude)},
        "task": to_plain(typed.task),
    }


def _store_dtype(name: str, model) -> str:
    """The dtype scores were decoded in. ``auto`` is kept where it still means what it meant
    when scores were first saved (fp32 on CPU, bf16 on CUDA), so those saved scores stay valid."""
    used = dtype_name(compute_dtype(model))
    legacy = "bfloat16" if model.device.type == "cuda" else "float32"
    return "auto" if name == "auto" and used == legacy else used


class PointScorer:
    """Scores model points (centre + direction) on whole splits through the store, saving each
    evaluation under ``evals/`` so later runs reuse it (the base model is scored once per task)."""

    def __init__(self, scorer: Scorer, space: ParameterSpace, store: ScoreStore, out: Path, fabric: Fabric) -> None:
        self.scorer, self.space, self.store, self.out, self.fabric = scorer, space, store, out, fabric
        self.keys: set[tuple[str, str, str]] = set()  # points scored here: free for the operator's budget

    def __call__(self, split: str, label: str, direction: Direction | None = None) -> Decoded:
        direction = Direction.zero() if direction is None else direction
        identity, centre = self.store.identity(split), self.space.committed
        self.keys.add((identity, direction_key(centre), direction_key(direction)))
        hit = self.store.get(identity, centre, direction)
        t = time.perf_counter()
        if hit is not None and hit.completions is not None:
            decoded = Decoded(Scores(hit.rewards, hit.correct), list(hit.completions), list(hit.answers))
        else:
            with self.space.perturbed(direction):
                decoded = self.scorer.score(split)
            row, _ = contain_nonfinite(
                Scored(decoded.scores.rewards, decoded.scores.correct, decoded.answers, decoded.completions)
            )
            decoded = Decoded(Scores(row.rewards, row.correct), decoded.completions, decoded.answers)
            self.store.put(identity, centre, direction, row)
            if self.fabric.is_global_zero:
                save_scored(self.out / "evals" / f"{label}_{split}.npz", identity, centre, [direction], [row], split)
        if self.fabric.is_global_zero:
            log.info(
                "%s on %s: accuracy %.3f (%s)",
                label,
                split,
                decoded.scores.accuracy,
                "saved scores" if hit is not None else f"{time.perf_counter() - t:.1f}s",
            )
        return decoded


def _score_splits(points: PointScorer, label: str, callbacks: Callbacks) -> dict[str, Decoded]:
    scored = {}
    for split in SPLITS:
        scored[split] = points(split, f"{label}_model")
        callbacks.eval(EvalScored(label, split, scored[split].scores.accuracy, scored[split].scores.mean_reward))
    return scored


def _vote(points: PointScorer, ensemble: Ensemble) -> dict[str, Any]:
    """Test accuracy of the top-k majority vote for each k (members are relative to the base)."""
    committed = points.space.committed
    decoded = [points("test", f"vote_member_{i:03d}", (m - committed).pruned()) for i, m in enumerate(ensemble.members)]
    answers = [d.answers for d in decoded]
    correct = np.stack([d.scores.correct for d in decoded])
    return {
        "accuracy": {str(k): vote_accuracy(answers, correct, k) for k in ensemble.ks},
        "member_accuracy": [float(c.mean()) for c in correct],
        "forward_passes_per_test_example": {str(k): k for k in ensemble.ks},
    }


def _throughput(totals: np.ndarray, seconds: float, world_size: int) -> dict[str, float]:
    """Decoding over the whole run (base, training, final, votes), summed over the ranks.

    The rates are per second of decoding, so they measure the scorer; ``decode_share`` is the part
    of the run's wall time (times the ranks) spent decoding, the rest being loading, noise and I/O."""
    examples, tokens, decode_s = (float(x) for x in totals)
    return {
        "examples_decoded": int(examples),
        "tokens_generated": int(tokens),
        "decode_seconds": decode_s,
        "examples_per_s": examples / decode_s if decode_s > 0 else 0.0,
        "tokens_per_s": tokens / decode_s if decode_s > 0 else 0.0,
        "decode_share": decode_s / (seconds * world_size) if seconds > 0 else 0.0,
    }


def _results(
    typed: Config, task, base, final, loop: RoundLoop, votes, seconds: float, throughput: dict[str, float]
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "method": typed.consolidation.name,
        "task": task.name,
        "model": typed.model.name_or_path,
        "dtype": dtype_name(compute_dtype(loop.space.model)),
        "seed": typed.seed,
    }
    for split in SPLITS:
        res[split] = _split_result(base[split], final[split])
    if votes is not None:
        res["test"]["vote"] = votes["accuracy"]
        res["vote"] = votes
    res["budget"] = {**asdict(loop.budget), "forward_passes_per_test_example": 1}
    res["committed"] = {"components": len(loop.space.committed), "coeff_norm": loop.space.committed.norm()}
    res["rounds"] = [{"round": r.round_idx, "committed": r.committed, **_jsonable(r.metrics)} for r in loop.history]
    res["seconds"] = seconds
    res["throughput"] = throughput
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return res


def _split_result(base: Decoded, final: Decoded) -> dict[str, Any]:
    return {
        "base": base.scores.accuracy,
        "final": final.scores.accuracy,
        "base_reward": base.scores.mean_reward,
        "final_reward": final.scores.mean_reward,
        "n": len(base.completions),
    }


def _jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in metrics.items()}


def _write_outputs(typed, out: Path, space, model, tokenizer, scorer, base, final, loop, results, callbacks) -> None:
    atomic_write_json(out / "results.json", results)
    atomic_write_json(
        out / "direction.json",
        {
            "model": typed.model.name_or_path,
            "include": list(typed.perturbation.include),
            "exclude": list(typed.perturbation.exclude),
            "noise_mode": typed.perturbation.noise_mode,
            "perturbed_weights": space.dim,
            "direction": space.committed.to_json(),
        },
    )
    atomic_write_json(out / "config.json", to_plain(typed))
    _write_samples(out / "samples.jsonl", scorer, base["test"], final["test"])

    plots = draw_run_plots(out, results)  # from rounds.jsonl, which the loop wrote
    if typed.export_model:
        save_model(model, tokenizer, space.centre_state(), typed.model.export_dtype, out / "model")

    if callbacks:
        rows = _sample_rows(scorer, base["test"], final["test"])[: typed.log_samples]
        callbacks.samples(SamplesReady("samples/end", rows, max(loop.budget.rounds - 1, 0)))
        callbacks.end(RunEnded(results, plots))


def _sample_rows(scorer: Scorer, base: Decoded, final: Decoded | None = None) -> list[dict[str, Any]]:
    """Test prompts with the reference answer and what the base (and the final) model answered."""
    rows = []
    for i, ex in enumerate(scorer.splits["test"]):
        row = {
            "prompt": ex.prompt,
            "answer": ex.answer,
            "base_completion": base.completions[i],
            "base_answer": base.answers[i],
            "base_reward": float(base.scores.rewards[i]),
        }
        if final is not None:
            row.update(
                {
                    "final_completion": final.completions[i],
                    "final_answer": final.answers[i],
                    "final_reward": float(final.scores.rewards[i]),
                }
            )
        rows.append(row)
    return rows


def _write_samples(path: Path, scorer: Scorer, base: Decoded, final: Decoded) -> None:
    with open(path, "w") as f:
        for row in _sample_rows(scorer, base, final):
            f.write(json.dumps(row) + "\n")


def _decode_part(t: dict[str, Any] | None) -> str:
    if not t:  # runs finished before throughput was recorded
        return ""
    return (f" ({t['decode_share']:.0%} decoding: {t['examples_decoded']} examples, "
            f"{t['examples_per_s']:.1f} examples/s, {t['tokens_per_s']:.0f} new tokens/s)")  # fmt: skip


def _print_summary(res: dict[str, Any], out: Path) -> None:
    b, t = res["budget"], res.get("throughput")
    lines = [
        "",
        f"CoRP post-training of {res['model']} on {res['task']} ({res['method']}, seed {res['seed']})",
        f"{'split':<8} {'n':>5} {'base':>8} {'final':>8} {'delta':>8}",
    ]
    for split in SPLITS:
        r = res[split]
        lines.append(f"{split:<8} {r['n']:>5} {r['base']:>8.3f} {r['final']:>8.3f} {r['final'] - r['base']:>+8.3f}")
    lines += [
        f"budget: {b['members_scored']} members scored, {b['example_evals']} example evaluations, "
        f"{b['candidate_evals']} candidate evaluations, {b['noise_draws']:.0f} noise draws, {b['rounds']} rounds",
        f"time: {res['seconds']:.0f}s{_decode_part(t)}",
        f"outputs: {out.resolve()}",
        "",
    ]
    print("\n".join(lines))
