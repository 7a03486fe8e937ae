"""One run end to end: build from the config, evaluate the base, run the rounds,
evaluate the consolidated model, and write every output."""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric import Fabric
from omegaconf import DictConfig

from corp.config import Config, ConfigError, to_plain, validate
from corp.consolidate import build_operator
from corp.consolidate.base import Ensemble, Scores
from corp.consolidate.vote import vote_accuracy
from corp.loop import RoundLoop, atomic_write_json
from corp.models.loading import load_model
from corp.perturb.direction import Direction
from corp.perturb.noise import NoiseSource
from corp.perturb.space import ParameterSpace
from corp.report.plots import population_rewards
from corp.scoring.scorer import Decoded, Scorer
from corp.store import Scored, ScoreStore, save_scored
from corp.tasks.base import SPLITS, build_task

log = logging.getLogger(__name__)


def build_loggers(cfg: Config, output_dir: Path) -> list:
    if cfg.logger.name == "none":
        return []
    if cfg.logger.name == "csv":
        from lightning.fabric.loggers import CSVLogger

        return [CSVLogger(root_dir=str(output_dir), name="csv", version="")]
    from lightning.pytorch.loggers import WandbLogger

    offline = cfg.logger.offline
    if offline is None:  # online only when the user has a key configured
        offline = not (os.environ.get("WANDB_API_KEY") or _netrc_has_wandb())
    return [
        WandbLogger(
            project=cfg.logger.project,
            name=output_dir.name,
            group=cfg.logger.group,
            save_dir=str(output_dir),
            offline=offline,
            config=to_plain(cfg),
        )
    ]


def _netrc_has_wandb() -> bool:
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def _wandb_run(loggers: list) -> Any:
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            return lg.experiment
    return None


def run(cfg: DictConfig | Config) -> dict[str, Any]:
    """Post-train ``cfg.model`` on ``cfg.task`` with ``cfg.consolidation``; returns results.json's content."""
    typed = validate(cfg)  # every config error surfaces here, before any work
    start = time.perf_counter()
    out = Path(typed.output_dir)
    if typed.trainer.num_threads:
        torch.set_num_threads(typed.trainer.num_threads)

    try:  # data and operator problems are config problems too: stop before any work
        task = build_task(typed.task)
        splits = task.splits({s: getattr(typed.task, f"{s}_size") for s in SPLITS}, typed.task.data_seed)
        operator = build_operator(typed)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if typed.population.load and not Path(typed.population.load).exists():
        raise ConfigError(f"population.load={typed.population.load}: no such file or directory")
    out.mkdir(parents=True, exist_ok=True)

    loggers = build_loggers(typed, out)
    fabric = Fabric(
        accelerator=typed.trainer.accelerator,
        devices=typed.trainer.devices,
        num_nodes=typed.trainer.num_nodes,
        strategy=typed.trainer.strategy,
        loggers=loggers,
    )
    fabric.launch()
    status = "failed"
    try:
        results = _run(typed, fabric, task, splits, operator, out, start, loggers)
        status = "success"
        return results
    finally:  # each run (also each multirun job) is closed, even on failure
        for lg in loggers:
            lg.finalize(status)
        if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
            import wandb

            wandb.finish(exit_code=0 if status == "success" else 1)  # a no-op if no run was started


def _run(typed: Config, fabric: Fabric, task, splits, operator, out: Path, start: float, loggers) -> dict[str, Any]:
    model, tokenizer = load_model(typed.model, fabric.device)
    noise = NoiseSource(typed.perturbation.noise_mode)
    pert = typed.perturbation
    space = ParameterSpace(model, noise, pert.include, pert.exclude, pert.dense_cache, pert.noise_cache_mb)
    scorer = Scorer(model, tokenizer, task, splits, typed.model.chat_template, typed.model.batch_size)
    log.info(
        "model %s: %.1fM perturbed weights in %d tensors; task %s: %s",
        typed.model.name_or_path,
        space.dim / 1e6,
        len(space.params),
        task.name,
        ", ".join(f"{s}={len(v)}" for s, v in splits.items()),
    )

    store = ScoreStore(_store_context(typed, scorer), splits)
    if typed.population.load:
        store.load(typed.population.load)
    points = PointScorer(scorer, space, store, out, fabric)
    base = _score_splits(points, "base")
    loop = RoundLoop(fabric, space, scorer, operator, out, store)
    for split in ("support", "probe"):  # the operator's first centre is the base: reuse its scores
        loop.prime_centre(split, base[split].scores)
    loop.run()
    final = _score_splits(points, "final")
    ensemble = operator.test_ensemble()
    votes = _vote(points, ensemble) if ensemble is not None else None

    results = _results(typed, task, base, final, loop, votes, time.perf_counter() - start)
    if fabric.is_global_zero:
        _write_outputs(typed, out, space, model, tokenizer, scorer, base, final, loop, results, loggers)
        fabric.log_dict({f"final/{k}": v for k, v in _flat(results).items()})
        _print_summary(results, out)
    return results


def _store_context(typed: Config, scorer: Scorer) -> dict[str, Any]:
    """What, besides the examples, decides a model point's scores (see corp.store)."""
    p = typed.perturbation
    return {
        "model": {k: getattr(typed.model, k) for k in ("name_or_path", "dtype", "chat_template")},
        "batch_size": scorer.batch_size,  # left padding can flip rare greedy ties
        "noise": {"mode": p.noise_mode, "include": list(p.include), "exclude": list(p.exclude)},
        "task": to_plain(typed.task),
    }


class PointScorer:
    """Scores model points (centre + direction) on whole splits through the store, saving each
    evaluation under ``evals/`` so later runs reuse it (the base model is scored once per task)."""

    def __init__(self, scorer: Scorer, space: ParameterSpace, store: ScoreStore, out: Path, fabric: Fabric) -> None:
        self.scorer, self.space, self.store, self.out, self.fabric = scorer, space, store, out, fabric

    def __call__(self, split: str, label: str, direction: Direction | None = None) -> Decoded:
        direction = Direction.zero() if direction is None else direction
        identity, centre = self.store.identity(split), self.space.committed
        hit = self.store.get(identity, centre, direction)
        t = time.perf_counter()
        if hit is not None and hit.completions is not None:
            decoded = Decoded(Scores(hit.rewards, hit.correct), list(hit.completions), list(hit.answers))
        else:
            with self.space.perturbed(direction):
                decoded = self.scorer.score(split)
            row = Scored(decoded.scores.rewards, decoded.scores.correct, decoded.answers, decoded.completions)
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


def _score_splits(points: PointScorer, label: str) -> dict[str, Decoded]:
    return {split: points(split, f"{label}_model") for split in SPLITS}


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


def _results(typed: Config, task, base, final, loop: RoundLoop, votes, seconds: float) -> dict[str, Any]:
    res: dict[str, Any] = {
        "method": typed.consolidation.name,
        "task": task.name,
        "model": typed.model.name_or_path,
        "seed": typed.seed,
    }
    for split in SPLITS:
        res[split] = {
            "base": base[split].scores.accuracy,
            "final": final[split].scores.accuracy,
            "base_reward": base[split].scores.mean_reward,
            "final_reward": final[split].scores.mean_reward,
            "n": len(base[split].completions),
        }
    if votes is not None:
        res["test"]["vote"] = votes["accuracy"]
        res["vote"] = votes
    res["budget"] = {**asdict(loop.budget), "forward_passes_per_test_example": 1}
    res["committed"] = {"components": len(loop.space.committed), "coeff_norm": loop.space.committed.norm()}
    res["rounds"] = [{"round": r.round_idx, "committed": r.committed, **_jsonable(r.metrics)} for r in loop.history]
    res["seconds"] = seconds
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return res


def _jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in metrics.items()}


def _flat(res: dict[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for k, v in res.items():
        if isinstance(v, dict):
            flat.update(_flat(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            flat[f"{prefix}{k}"] = float(v)
    return flat


def _write_outputs(typed, out: Path, space, model, tokenizer, scorer, base, final, loop, results, loggers) -> None:
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

    plots = []
    first = next((r for r in loop.history if r.scores is not None), None)
    if first is not None:
        plots.append(
            population_rewards(
                first.scores.mean_rewards,
                first.population.sigmas,
                base[first.population.split].scores.mean_reward,
                final[first.population.split].scores.mean_reward,
                out / "plots" / "population_rewards.png",
                split=first.population.split,
            )
        )
    if typed.export_model:
        target = out / "model"
        tmp = out / "model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)  # the live model holds the centre after the loop
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)

    run = _wandb_run(loggers)
    if run is not None:
        import wandb

        run.summary.update(_flat(results))
        for p in plots:
            run.log({f"plots/{p.stem}": wandb.Image(str(p))})
        table = wandb.Table(
            columns=["prompt", "answer", "base completion", "final completion", "base reward", "final reward"]
        )
        for row in _sample_rows(scorer, base["test"], final["test"])[: typed.log_samples]:
            table.add_data(*row.values())
        run.log({"samples/test": table})


def _sample_rows(scorer: Scorer, base: Decoded, final: Decoded) -> list[dict[str, Any]]:
    rows = []
    for i, ex in enumerate(scorer.splits["test"]):
        rows.append(
            {
                "prompt": ex.prompt,
                "answer": ex.answer,
                "base_completion": base.completions[i],
                "final_completion": final.completions[i],
                "base_reward": float(base.scores.rewards[i]),
                "final_reward": float(final.scores.rewards[i]),
            }
        )
    return rows


def _write_samples(path: Path, scorer: Scorer, base: Decoded, final: Decoded) -> None:
    with open(path, "w") as f:
        for row in _sample_rows(scorer, base, final):
            f.write(json.dumps(row) + "\n")


def _print_summary(res: dict[str, Any], out: Path) -> None:
    b = res["budget"]
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
        f"time: {res['seconds']:.0f}s",
        f"outputs: {out.resolve()}",
        "",
    ]
    print("\n".join(lines))
