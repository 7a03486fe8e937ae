"""What the loggers record besides the scalar metrics: per-round histograms and tables, sample
completions and the run's plots (W&B), and the headline results (W&B's summary, MLflow's metrics).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from corp.observe.rounds import jsonable
from corp.results import Results


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cell(value: Any) -> Any:
    """Scalars as they are; anything else (a task's structured answer) as JSON text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(jsonable(value))


def table(rows: Sequence[dict[str, Any]]):
    """A ``wandb.Table`` of row dicts; columns in order of first appearance. Mixed types are
    allowed: a column may hold numbers and text (e.g. answers that are sometimes numeric)."""
    import wandb

    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    data = [[_cell(row.get(c)) for c in columns] for row in rows]
    return wandb.Table(columns=columns, data=data, allow_mixed_types=True)


def round_content(entry: dict[str, Any]) -> dict[str, Any]:
    """W&B objects for one ``rounds.jsonl`` entry: the population's reward histogram and
    per-sigma table, then each operator detail (rows -> table, numbers -> histogram)."""
    import wandb

    content: dict[str, Any] = {}
    pop = entry.get("population")
    if pop:
        content["population/reward_hist"] = wandb.Histogram(pop["mean_rewards"])
        content["population/reward_by_sigma_table"] = table(pop["reward_by_sigma"])
    for key, value in entry.get("details", {}).items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            content[key] = table(value)
        elif isinstance(value, list) and value and all(is_number(v) for v in value):
            content[key] = wandb.Histogram(value)
    return content


def log_images(run: Any, paths: Sequence[Path], round_idx: int, log: Any = None) -> None:
    """The run's plots (media panels, not charts), once, at its last round; ``log`` (default
    ``run.log``) writes the row."""
    import wandb

    for p in paths:
        run.define_metric(f"plots/{p.stem}", step_metric="round", summary="none")
    (log or run.log)({"round": round_idx, **{f"plots/{p.stem}": wandb.Image(str(p)) for p in paths}})


def headline(results: Results) -> dict[str, float]:
    """The summary a reader looks for first: accuracy of the final model and its gain over the base on
    every split with their standard errors (the gain's paired), the budget and the throughput (results.json
    holds the rest)."""
    out: dict[str, float] = {}
    for split, r in results.splits.items():
        out[f"{split}/accuracy"] = r.final
        out[f"{split}/base_accuracy"] = r.base
        out[f"{split}/gain"] = r.gain
        out[f"{split}/reward"] = r.final_reward
        for key, name in (("final", "accuracy"), ("base", "base_accuracy"), ("gain", "gain"),
                          ("final_reward", "reward")):  # fmt: skip
            if r.se and key in r.se:  # results.json files from before SEs were recorded have none
                out[f"{split}/{name}_se"] = r.se[key]
    for group in ("budget", "throughput"):
        values = results.to_json().get(group) or {}
        out.update({f"{group}/{k}": v for k, v in values.items() if is_number(v)})
    out["seconds"] = results.seconds
    return out
