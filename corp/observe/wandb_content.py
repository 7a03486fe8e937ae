"""What goes to W&B besides the scalar metrics: per-round histograms and tables, sample
completions, the run's plots, and config + results as the run summary.

Everything is logged against ``trainer/global_step`` (the round), the x-axis Lightning's
``WandbLogger`` sets for the scalar metrics, so tables line up with the curves.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from corp.observe.rounds import jsonable

STEP_KEY = "trainer/global_step"


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


def log_round(run: Any, entry: dict[str, Any]) -> None:
    content = round_content(jsonable(entry))
    if content:
        run.log({**content, STEP_KEY: entry["round"]})


def log_samples(run: Any, key: str, rows: Sequence[dict[str, Any]], step: int) -> None:
    run.log({key: table(rows), STEP_KEY: step})


def log_images(run: Any, paths: Sequence[Path], step: int) -> None:
    import wandb

    if paths:
        run.log({**{f"plots/{p.stem}": wandb.Image(str(p)) for p in paths}, STEP_KEY: step})


def flatten(value: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Nested dicts as ``prefix/a/b`` keys; lists of rows (e.g. results' per-round metrics,
    logged per round already) are left out, other lists kept as they are."""
    flat: dict[str, Any] = {}
    for k, v in value.items():
        key = f"{prefix}/{k}"
        if isinstance(v, dict):
            flat.update(flatten(v, key))
        elif isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
            continue
        else:
            flat[key] = v
    return flat


def run_summary(config: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """config.json and results.json as flat summary keys: ``config/...`` and ``results/...``."""
    return {**flatten(jsonable(config), "config"), **flatten(jsonable(results), "results")}
