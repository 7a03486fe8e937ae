"""One run end to end: check and build everything, score the base model, run the rounds, score
the consolidated model, and write every output. ``mode=eval`` scores a saved direction or model
next to the base instead of training."""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric import Fabric
from omegaconf import DictConfig

from corp.config import Config, to_plain, validate
from corp.consolidate.base import Ensemble, Scores
from corp.consolidate.vote import vote_accuracy
from corp.errors import RunFailed, UserError
from corp.evaluate import Evaluator, decode_totals
from corp.loop import RoundLoop, atomic_write_json
from corp.models.loading import ModelConfig, load_model
from corp.models.precision import compute_dtype, dtype_name, resolve_dtype, set_compute_dtype
from corp.observe.callbacks import Callbacks, EvalScored, RunEnded, RunStarted, SamplesReady
from corp.observe.local import ConsoleLog, RoundsLog
from corp.outputs import sample_rows, write_samples, write_train_outputs
from corp.perturb.noise import NoiseSource
from corp.perturb.space import ParameterSpace
from corp.results import Results, SplitResult
from corp.scoring.scorer import Scorer
from corp.startup import (
    Inputs,
    build_fabric,
    build_loggers,
    check_resume,
    interrupts_raise,
    prepare,
    remove_run_outputs,
)
from corp.store import ScoreStore
from corp.tasks.base import EXAMPLE_SELECTION, SPLITS

log = logging.getLogger(__name__)


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
    inputs = prepare(typed)  # data, operator, model files: checked before anything is written
    loggers = build_loggers(typed)
    fabric = build_fabric(typed)
    resumed = typed.mode == "train" and check_resume(typed, out)
    if resumed and (out / "results.json").exists():  # finished: rerunning a sweep skips its done jobs
        results = Results.load(out)
        log.info("%s already holds this finished run (resume=never redoes it)", out)
        print(results.summary(out))
        return results.to_json()
    fresh = not (out / "config.json").exists()
    callbacks = Callbacks()  # only rank 0 observes
    if fabric.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", to_plain(typed))
        if on_start is not None:
            on_start(out)
        callbacks = Callbacks([RoundsLog(out / "rounds.jsonl"), ConsoleLog(), *loggers.callbacks])

    status = "failed"
    try:
        with interrupts_raise():
            # before any decoding: a dashboard shows the run from its first second, and a crash too
            callbacks.start(RunStarted(out, to_plain(typed), resumed, typed.mode))
            fabric.launch()
            session = Session.build(typed, fabric, inputs, out, callbacks, resumed, start)
            results = _evaluate_only(session) if typed.mode == "eval" else _train(session)
        status = "success"
        return results.to_json()
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


@dataclass
class Session:
    """What one run works with once it has started: the model, its parameter space, the scorer,
    the score store and the evaluator every score goes through."""

    cfg: Config
    fabric: Fabric
    inputs: Inputs
    out: Path
    callbacks: Callbacks
    start: float  # perf_counter at the run's start
    model: Any
    tokenizer: Any
    space: ParameterSpace
    scorer: Scorer
    evaluator: Evaluator

    @classmethod
    def build(cls, typed: Config, fabric: Fabric, inputs: Inputs, out: Path, callbacks: Callbacks, resumed: bool,
              start: float) -> Session:  # fmt: skip
        model, tokenizer = load_model(typed.model, fabric.device, inputs.source, inputs.tokenizer, compute=False)
        pert = typed.perturbation
        noise = NoiseSource(pert.noise_mode)
        space = ParameterSpace(model, noise, pert.include, pert.exclude, pert.dense_cache, pert.noise_cache_mb)
        set_compute_dtype(model, resolve_dtype(typed.model.dtype, fabric.device))  # the space keeps fp32 masters
        space.restore()  # live weights: the compute-dtype rounding of the fp32 centre
        scorer = Scorer(model, tokenizer, inputs.task, inputs.splits, typed.model.chat_template, typed.model.batch_size)
        log.info("model %s: %.1fM perturbed weights in %d tensors; task %s: %s", typed.model.name_or_path,
                 space.dim / 1e6, len(space.params), inputs.task.name,
                 ", ".join(f"{s}={len(v)}" for s, v in inputs.splits.items()))  # fmt: skip
        context, legacy = _store_contexts(typed, scorer)
        store = ScoreStore(context, inputs.splits, legacy=[legacy])
        if typed.population.load:  # first, so that points this run took from others stay counted as reused
            store.load(typed.population.load, exclude=out if typed.mode == "train" else None)
        if resumed:  # this run's own earlier scores: replaying them is not reuse
            store.load(out, source="resumed")
        evaluator = Evaluator(fabric, space, scorer, store, out, callbacks, typed.log_samples, typed.checkpoint_every_s)
        return cls(typed, fabric, inputs, out, callbacks, start, model, tokenizer, space, scorer, evaluator)

    def score_splits(self, label: str, splits=SPLITS) -> dict[str, Scores]:
        """The current centre on whole splits, each reported to the observers."""
        scored = {}
        for split in splits:
            scored[split] = self.evaluator.evaluation(split, f"{label}_model")
            self.callbacks.eval(EvalScored(label, split, scored[split].accuracy, scored[split].mean_reward))
        return scored

    def throughput(self) -> tuple[float, dict[str, float]]:
        """Seconds so far and the decoding over the whole run (base, training, final, votes), summed over
        the ranks (a collective). The rates are per second of decoding, so they measure the scorer;
        ``decode_share`` is the part of the wall time (times the ranks) spent decoding."""
        seconds = time.perf_counter() - self.start
        examples, tokens, decode_s = (float(x) for x in decode_totals(self.fabric, self.scorer))
        return seconds, {
            "examples_decoded": int(examples),
            "tokens_generated": int(tokens),
            "decode_seconds": decode_s,
            "examples_per_s": examples / decode_s if decode_s > 0 else 0.0,
            "tokens_per_s": tokens / decode_s if decode_s > 0 else 0.0,
            "decode_share": decode_s / (seconds * self.fabric.world_size) if seconds > 0 else 0.0,
        }


def _train(s: Session) -> Results:
    typed = s.cfg
    base = s.score_splits("base")
    # what the base model answers, before any training
    s.callbacks.samples(SamplesReady("samples/start", sample_rows(s.scorer, base["test"])[: typed.log_samples], 0))
    loop = RoundLoop(s.evaluator, s.inputs.operator, s.out, s.callbacks)
    loop.run()
    ev = s.evaluator
    if ev.decoded_points and ev.budget.failed_points == ev.decoded_points:
        raise RunFailed(f"{_reward_key(typed)}: every point scored in training ({ev.decoded_points}) had NaN or "
                        "infinite rewards, so every one failed; no result is written")  # fmt: skip
    final = s.score_splits("final")
    ensemble = s.inputs.operator.test_ensemble()
    votes = _vote(s, ensemble) if ensemble is not None else None

    seconds, throughput = s.throughput()
    splits = {split: SplitResult.of(base[split], final[split]) for split in SPLITS}
    if votes is not None:
        splits["test"].vote = votes["accuracy"]
    results = Results(
        mode="train", task=s.inputs.task.name, model=typed.model.name_or_path,
        dtype=dtype_name(compute_dtype(s.model)), splits=splits, seconds=seconds, throughput=throughput,
        method=typed.consolidation.name, seed=typed.seed,
        budget={**asdict(ev.budget), "forward_passes_per_test_example": 1},
        committed={"components": len(s.space.committed), "coeff_norm": s.space.committed.norm()},
        rounds=[{"round": r.round_idx, "committed": r.committed, **_jsonable(r.metrics)} for r in loop.history],
        vote=votes, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
    )  # fmt: skip
    if s.fabric.is_global_zero:
        write_train_outputs(s, base, final, results, last_round=max(ev.budget.rounds - 1, 0))
        print(results.summary(s.out))
    return results


def _evaluate_only(s: Session) -> Results:
    """``mode=eval``: the base and the saved direction or model on ``eval.splits``."""
    typed, target = s.cfg, s.inputs.evaluated
    base = s.score_splits("base", typed.eval.splits)
    if "direction" in target:
        final = {split: s.evaluator.evaluation(split, "evaluated", target["direction"]) for split in typed.eval.splits}
        evaluated = target["path"]
    else:  # another model altogether: scored directly, it is no point of this parameter space
        other, _ = load_model(ModelConfig(**{**asdict(typed.model), "name_or_path": target["model"]}), s.fabric.device)
        s.scorer.model = other
        final = {split: s.scorer.score(split) for split in typed.eval.splits}
        evaluated = target["model"]
    seconds, throughput = s.throughput()
    results = Results(
        mode="eval", task=s.inputs.task.name, model=typed.model.name_or_path,
        dtype=dtype_name(compute_dtype(s.scorer.model)),
        splits={split: SplitResult.of(base[split], final[split]) for split in typed.eval.splits},
        seconds=seconds, throughput=throughput, evaluated=evaluated,
    )  # fmt: skip
    if s.fabric.is_global_zero:
        atomic_write_json(s.out / "results.json", results.to_json())
        s.callbacks.end(RunEnded(results.to_json()))
        if "test" in typed.eval.splits:
            write_samples(s.out / "samples.jsonl", s.scorer, base["test"], final["test"])
        print(results.summary(s.out))
    return results


def _reward_key(typed: Config) -> str:
    """The setting that decides the rewards, for messages: the user's reward function, else the task."""
    reward_fn = getattr(typed.task, "reward_fn", None)
    return f"task.reward_fn={reward_fn!r}" if reward_fn else f"task={typed.task.name}"


def _store_contexts(typed: Config, scorer: Scorer) -> tuple[dict[str, Any], dict[str, Any]]:
    """What, besides the examples, decides a model point's scores (see corp.store); and the context
    scores were keyed with before the store keyed on examples (the whole task config), so that
    those saved files stay readable."""
    p = typed.perturbation
    task = to_plain(typed.task)
    context = {
        "model": {
            "name_or_path": typed.model.name_or_path,
            "dtype": _store_dtype(typed.model.dtype, scorer.model),
            "chat_template": typed.model.chat_template,
        },
        "batch_size": scorer.batch_size,  # left padding can flip rare greedy ties
        "noise": {"mode": p.noise_mode, "include": list(p.include), "exclude": list(p.exclude)},
    }
    current = {**context, "task": {k: v for k, v in task.items() if k not in EXAMPLE_SELECTION}, "version": 2}
    return current, {**context, "task": task}


def _store_dtype(name: str, model) -> str:
    """The dtype scores were decoded in. ``auto`` is kept where it still means what it meant
    when scores were first saved (fp32 on CPU, bf16 on CUDA), so those saved scores stay valid."""
    used = dtype_name(compute_dtype(model))
    legacy = "bfloat16" if model.device.type == "cuda" else "float32"
    return "auto" if name == "auto" and used == legacy else used


def _vote(s: Session, ensemble: Ensemble) -> dict[str, Any]:
    """Test accuracy of the top-k majority vote for each k (members are relative to the base)."""
    committed = s.space.committed
    scored = [s.evaluator.evaluation("test", f"vote_member_{i:03d}", (m - committed).pruned())
              for i, m in enumerate(ensemble.members)]  # fmt: skip
    answers = [d.answers for d in scored]
    correct = np.stack([d.correct for d in scored])
    return {
        "accuracy": {str(k): vote_accuracy(answers, correct, k) for k in ensemble.ks},
        "member_accuracy": [float(c.mean()) for c in correct],
        "forward_passes_per_test_example": {str(k): k for k in ensemble.ks},
    }


def _jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in metrics.items()}
