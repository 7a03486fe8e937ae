"""What a finished training run writes besides the scores it saved on the way: results.json,
direction.json, samples.jsonl, the plots and the exported model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corp.config import to_plain
from corp.consolidate.base import Scores
from corp.loop import atomic_write_json
from corp.models.loading import save_model
from corp.observe.callbacks import RunEnded, SamplesReady
from corp.report.run_plots import draw_run_plots
from corp.results import Results
from corp.scoring.scorer import Scorer

if TYPE_CHECKING:
    from corp.run import Session


def write_train_outputs(s: Session, base: dict[str, Scores], final: dict[str, Scores], results: Results,
                        last_round: int) -> None:  # fmt: skip
    typed, out = s.cfg, s.out
    data = results.to_json()
    atomic_write_json(out / "results.json", data)
    p = typed.perturbation
    atomic_write_json(out / "direction.json", {
        "model": typed.model.name_or_path,
        "include": list(p.include),
        "exclude": list(p.exclude),
        "noise_mode": p.noise_mode,
        "perturbed_weights": s.space.dim,
        "direction": s.space.committed.to_json(),
    })  # fmt: skip
    atomic_write_json(out / "config.json", to_plain(typed))
    write_samples(out / "samples.jsonl", s.scorer, base["test"], final["test"])

    plots = draw_run_plots(out, data)  # from rounds.jsonl, which the loop's observers wrote
    if typed.export_model:
        save_model(s.model, s.tokenizer, s.space.centre_state(), typed.model.export_dtype, out / "model")

    rows = sample_rows(s.scorer, base["test"], final["test"])[: typed.log_samples]
    s.callbacks.samples(SamplesReady("samples/end", rows, last_round))
    s.callbacks.end(RunEnded(data, plots))


def sample_rows(scorer: Scorer, base: Scores, final: Scores | None = None) -> list[dict[str, Any]]:
    """Test prompts with the reference answer and what the base (and the final) model answered."""
    rows = []
    for i, ex in enumerate(scorer.splits["test"]):
        row = {"prompt": ex.prompt, "answer": ex.answer, "base_completion": base.completions[i],
               "base_answer": base.answers[i], "base_reward": float(base.rewards[i])}  # fmt: skip
        if final is not None:
            row.update({"final_completion": final.completions[i], "final_answer": final.answers[i],
                        "final_reward": float(final.rewards[i])})  # fmt: skip
        rows.append(row)
    return rows


def write_samples(path: Path, scorer: Scorer, base: Scores, final: Scores) -> None:
    with open(path, "w") as f:
        for row in sample_rows(scorer, base, final):
            f.write(json.dumps(row) + "\n")
