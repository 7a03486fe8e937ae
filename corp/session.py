"""What one run works with once it has started: the model, its parameter space, the scorer, the
score store and the evaluator every score goes through."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from lightning.fabric import Fabric
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from corp.config import Config, to_plain
from corp.debugging import MemberProfile
from corp.evaluate import Evaluator, decode_totals
from corp.models.loading import cache_root, load_model
from corp.models.precision import compute_dtype, dtype_name, resolve_dtype, set_compute_dtype
from corp.observe.callbacks import Callbacks, EvalScored
from corp.perturb.noise import NoiseSource
from corp.perturb.space import ParameterSpace
from corp.provenance import model_fingerprint
from corp.results import Throughput
from corp.scores import Scores
from corp.scoring.scorer import Scorer
from corp.startup import Inputs
from corp.store import ScoreStore, store_context
from corp.tasks.base import SPLITS

log = logging.getLogger("corp.run")


@dataclass
class Session:
    cfg: Config
    fabric: Fabric
    inputs: Inputs
    out: Path
    callbacks: Callbacks
    start: float  # perf_counter at the run's start
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    space: ParameterSpace
    scorer: Scorer
    evaluator: Evaluator
    model_digest: str  # corp.provenance.model_fingerprint of the weights as loaded

    @classmethod
    def build(cls, typed: Config, fabric: Fabric, inputs: Inputs, out: Path, callbacks: Callbacks, resumed: bool,
              start: float, source: Path | str | None = None) -> Session:  # fmt: skip
        """``source``: what to load for ``typed.model`` (default: the run's resolved model)."""
        source = inputs.source if source is None else source
        model, tokenizer = load_model(typed.model, fabric.device, source, inputs.tokenizer, compute=False)
        digest = model_fingerprint(model, source, cache_root(typed.model))
        pert = typed.perturbation
        noise = NoiseSource(pert.noise_mode)
        space = ParameterSpace(model, noise, pert.include, pert.exclude, pert.dense_cache, pert.noise_cache_mb)
        set_compute_dtype(model, resolve_dtype(typed.model.dtype, fabric.device))  # the space keeps fp32 masters
        space.restore()  # live weights: the compute-dtype rounding of the fp32 centre
        scorer = Scorer(model, tokenizer, inputs.task, inputs.splits, typed.model.chat_template, typed.model.batch_size)
        log.info("model %s: %.1fM perturbed weights in %d tensors; task %s: %s", typed.model.name_or_path,
                 space.dim / 1e6, len(space.params), inputs.task.name,
                 ", ".join(f"{s}={len(v)}" for s, v in inputs.splits.items()))  # fmt: skip
        context = store_context(to_plain(typed), dtype_name(compute_dtype(model)), scorer.batch_size)
        store = ScoreStore(context, inputs.splits)
        if typed.population.load:  # first, so that points this run took from others stay counted as reused
            store.load(typed.population.load, exclude=out if typed.mode == "train" else None)
        if resumed:  # this run's own earlier scores: replaying them is not reuse
            store.load(out, source="resumed")
        evaluator = Evaluator(fabric, space, scorer, store, out, callbacks, typed.log_samples, typed.checkpoint_every_s,
                              typed.racing)  # fmt: skip
        if typed.profile and fabric.is_global_zero:
            evaluator.profile = MemberProfile(out)
        return cls(typed, fabric, inputs, out, callbacks, start, model, tokenizer, space, scorer, evaluator, digest)

    @property
    def dtype(self) -> str:
        """The compute dtype the model is scored in."""
        return dtype_name(compute_dtype(self.model))

    def score_splits(self, label: str, splits=SPLITS, direction=None) -> dict[str, Scores]:
        """The centre (plus ``direction``) on whole splits, each reported to the observers."""
        scored = {}
        for split in splits:
            scored[split] = self.evaluator.evaluation(split, f"{label}_model", direction)
            self.callbacks.eval(EvalScored(label, split, scored[split].accuracy, scored[split].mean_reward))
        return scored

    def throughput(self, *others: Scorer) -> tuple[float, Throughput]:
        """Seconds so far and the decoding over the whole run, this session's scorer and ``others``
        (a collective over the ranks)."""
        seconds = time.perf_counter() - self.start
        examples, tokens, decode_s = (float(x) for x in decode_totals(self.fabric, self.scorer, *others))
        return seconds, Throughput(
            examples_decoded=int(examples),
            tokens_generated=int(tokens),
            decode_seconds=decode_s,
            examples_per_s=examples / decode_s if decode_s > 0 else 0.0,
            tokens_per_s=tokens / decode_s if decode_s > 0 else 0.0,
            decode_share=decode_s / (seconds * self.fabric.world_size) if seconds > 0 else 0.0,
        )
