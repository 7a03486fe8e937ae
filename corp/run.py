"""One run end to end: check and build everything, score the base model, run the rounds, score
the consolidated model, and write every output. ``mode=eval`` scores a saved direction or model
next to the base instead of training."""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from corp.config import Config, to_plain, validate
from corp.consolidate.base import Ensemble
from corp.consolidate.vote import vote_accuracy
from corp.debugging import config_tree
from corp.errors import RunFailed, UserError
from corp.files import atomic_write_json
from corp.loop import RoundLoop
from corp.observe.callbacks import Callbacks, RunStarted, SamplesReady
from corp.observe.local import ConsoleLog, RoundsLog
from corp.outputs import finish, sample_rows
from corp.provenance import provenance
from corp.results import Committed, Results, SplitResult, Vote
from corp.session import Session
from corp.startup import build_fabric, build_loggers, check_resume, interrupts_raise, prepare, remove_run_outputs
from corp.tasks.base import SPLITS

log = logging.getLogger(__name__)


def run(cfg: DictConfig | Config, on_start: Callable[[Path], None] | None = None) -> Results:
    """Post-train ``cfg.model`` on ``cfg.task`` with ``cfg.consolidation`` (or, with ``mode=eval``,
    evaluate a saved direction or model); returns what results.json holds.

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
        return results
    fresh = not (out / "config.json").exists()
    callbacks = Callbacks()  # only rank 0 observes
    if fabric.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", to_plain(typed))
        if on_start is not None:
            on_start(out)
        callbacks = Callbacks([RoundsLog(out / "rounds.jsonl"), ConsoleLog(), *loggers.callbacks])
        if typed.print_config:
            print(config_tree(to_plain(typed)))

    status = "failed"
    try:
        with interrupts_raise():
            # before any decoding: a dashboard shows the run from its first second, and a crash too
            callbacks.start(RunStarted(out, to_plain(typed), resumed, typed.mode))
            fabric.launch()
            session = Session.build(typed, fabric, inputs, out, callbacks, resumed, start)
            results = _evaluate_only(session) if typed.mode == "eval" else _train(session)
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
    vote = _vote(s, ensemble) if ensemble is not None else None
    seconds, throughput = s.throughput()
    results = Results(
        mode="train", task=s.inputs.task.name, model=typed.model.name_or_path, dtype=s.dtype,
        splits={split: SplitResult.of(base[split], final[split]) for split in SPLITS}, seconds=seconds,
        throughput=throughput, method=typed.consolidation.name, seed=typed.seed, budget=ev.budget,
        committed=Committed(len(s.space.committed), s.space.committed.norm()),
        rounds=[{"round": r.round_idx, "committed": r.committed, **_jsonable(r.metrics)} for r in loop.history],
        vote=vote, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
        provenance=provenance(s.inputs.task, s.inputs.splits, s.model_digest),
    )  # fmt: skip
    finish(s, results, base, final, last_round=max(ev.budget.rounds - 1, 0))
    return results


def _evaluate_only(s: Session) -> Results:
    """``mode=eval``: the base and the saved direction or model on ``eval.splits``, both through an
    evaluator (the store, saving, NaN containment)."""
    typed, target = s.cfg, s.inputs.evaluated
    base = s.score_splits("base", typed.eval.splits)
    scored = s
    if target.model is not None:  # another model altogether: no point of this parameter space, a session of its own
        other = replace(typed, model=replace(typed.model, name_or_path=target.model))
        scored = Session.build(other, s.fabric, s.inputs, s.out, s.callbacks, False, s.start, source=target.model)
    final = {split: scored.evaluator.evaluation(split, "evaluated", target.direction) for split in typed.eval.splits}
    seconds, throughput = s.throughput(scored.scorer)
    results = Results(
        mode="eval", task=s.inputs.task.name, model=typed.model.name_or_path, dtype=scored.dtype,
        splits={split: SplitResult.of(base[split], final[split]) for split in typed.eval.splits},
        seconds=seconds, throughput=throughput, evaluated=target.name,
        provenance=provenance(s.inputs.task, s.inputs.splits, s.model_digest),
    )  # fmt: skip
    finish(s, results, base, final)
    return results


def _reward_key(typed: Config) -> str:
    """The setting that decides the rewards, for messages: the user's reward function, else the task."""
    reward_fn = getattr(typed.task, "reward_fn", None)
    return f"task.reward_fn={reward_fn!r}" if reward_fn else f"task={typed.task.name}"


def _vote(s: Session, ensemble: Ensemble) -> Vote:
    """Test accuracy of the top-k majority vote for each k (members are relative to the base)."""
    committed = s.space.committed
    scored = [s.evaluator.evaluation("test", f"vote_member_{i:03d}", (m - committed).pruned())
              for i, m in enumerate(ensemble.members)]  # fmt: skip
    answers = [d.answers for d in scored]
    correct = np.stack([d.correct for d in scored])
    return Vote(
        accuracy={str(k): vote_accuracy(answers, correct, k) for k in ensemble.ks},
        member_accuracy=[float(c.mean()) for c in correct],
        passes={str(k): k for k in ensemble.ks},
    )


def _jsonable(metrics: dict) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in metrics.items()}
