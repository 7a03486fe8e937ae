"""What a finished run writes besides the scores it saved on the way, for every mode: results.json,
samples.jsonl and the observers' ``RunEnded``; a training run also direction.json, the plots and the
exported model with its card (and, with ``push_to_hub``, its upload). (config.json is written once,
when the run starts.)"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from corp.files import atomic_write_json
from corp.model_card import push_to_hub, write_model_card
from corp.models.loading import save_model
from corp.observe.callbacks import RunEnded, SamplesReady
from corp.provenance import example_id
from corp.report.run_plots import draw_run_plots
from corp.results import Results
from corp.scores import Scores
from corp.scoring.scorer import Scorer
from corp.session import Session

log = logging.getLogger(__name__)


def finish(
    s: Session, results: Results, base: dict[str, Scores], final: dict[str, Scores], last_round: int = 0
) -> None:
    """Write the run's outputs and tell the observers it ended (rank 0; the others return)."""
    if not s.fabric.is_global_zero:
        return
    typed, out = s.cfg, s.out
    data = results.to_json()
    plots: list[Path] = []
    if results.mode == "train":
        p = typed.perturbation
        direction = {
            "model": typed.model.name_or_path,
            "include": list(p.include),
            "exclude": list(p.exclude),
            "noise_mode": p.noise_mode,
            "perturbed_weights": s.space.dim,
            "direction": s.space.committed.to_json(),
        }
        atomic_write_json(out / "direction.json", direction)
        plots = draw_run_plots(out, data)  # from rounds.jsonl, which the loop's observers wrote
        if typed.export_model:
            save_model(s.model, s.tokenizer, s.space.centre_state(), typed.model.export_dtype, out / "model")
            write_model_card(out / "model", results, direction, out)
            if typed.push_to_hub:
                log.info("model/ uploaded to the hub: %s", push_to_hub(out / "model", typed.push_to_hub))
    write_samples(out / "samples.jsonl", s.scorer, base, final)
    if "test" in final:
        rows = sample_rows(s.scorer, base["test"], final["test"])[: typed.log_samples]
        s.callbacks.samples(SamplesReady("samples/end", rows, last_round))
    atomic_write_json(out / "results.json", data)  # last: it marks the run finished (a rerun skips it)
    s.callbacks.end(RunEnded(results, plots))
    print(results.summary(out))


def sample_rows(scorer: Scorer, base: Scores, final: Scores | None = None, split: str = "test") -> list[dict[str, Any]]:
    """A split's prompts with the reference answer and what the base (and the final) model answered; each
    row names its split and example (``corp.provenance.example_id``) and holds the prompt twice: as the
    task wrote it and as the model read it (chat template, system prompt and few-shot turns included)."""
    rows = []
    for i, ex in enumerate(scorer.splits[split]):
        row = {"split": split, "id": example_id(ex), "prompt": ex.prompt, "prompt_text": scorer.prompt_text(split, i),
               "answer": ex.answer, "base_completion": base.completions[i], "base_answer": base.answers[i],
               "base_reward": float(base.rewards[i])}  # fmt: skip
        if final is not None:
            row.update({"final_completion": final.completions[i], "final_answer": final.answers[i],
                        "final_reward": float(final.rewards[i])})  # fmt: skip
        rows.append(row)
    return rows


def write_samples(path: Path, scorer: Scorer, base: dict[str, Scores], final: dict[str, Scores]) -> None:
    """``samples.jsonl``: one row per example of every split that was evaluated."""
    with open(path, "w") as f:
        for split in base:
            for row in sample_rows(scorer, base[split], final[split], split):
                f.write(json.dumps(row) + "\n")
