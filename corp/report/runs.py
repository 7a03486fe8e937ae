"""Finished runs below a folder: each ``results.json`` with its run's flattened config."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corp.config import flatten
from corp.results import Results

MISSING = "–"  # a key this run's config does not have (e.g. another method's option)


@dataclass
class Run:
    dir: Path
    results: Results
    config: dict[str, str]  # flattened config, values as JSON text: what the table groups and shows
    plain: dict[str, Any]  # config.json as saved: what operators label their rows from
    task: str  # the task's column label (Task.label): task=gym task.dataset=letter_counting is letter_counting

    @property
    def method(self) -> str:
        """``consolidation.name`` (a registry key), or the run's mode for runs without one (``eval``)."""
        return self.results.label

    @property
    def is_eval(self) -> bool:
        """A run that evaluated a saved direction (``mode=eval``) instead of training."""
        return self.results.mode == "eval"

    def value(self, key: str) -> str:
        return self.config.get(key, MISSING)


def load_runs(folder: Path) -> tuple[list[Run], list[Path]]:
    """Finished runs below ``folder``, and the run folders without results.json (unfinished)."""
    runs = []
    for res_file in sorted(folder.rglob("results.json")):
        cfg_file = res_file.with_name("config.json")
        plain = json.loads(cfg_file.read_text()) if cfg_file.exists() else {}
        results = Results.load(res_file)
        label = task_label(results.task, plain.get("task"))
        runs.append(Run(res_file.parent, results, _as_text(flatten(plain)), plain, label))
    unfinished = [f.parent for f in sorted(folder.rglob("config.json"))
                  if not (f.parent / "results.json").exists() and _is_run_config(f)]  # fmt: skip
    return runs, unfinished


def task_label(name: str, task_cfg: dict[str, Any] | None) -> str:
    """``Task.label`` of the registered task ``name`` (the name itself for a task this checkout lacks)."""
    from corp.tasks import TASKS  # importing the package registers the built-in tasks

    cls = TASKS.get(name)
    return cls.label(task_cfg or {}) if cls is not None else name


def _is_run_config(path: Path) -> bool:
    """A corp run's resolved config (not, e.g., the config.json of an exported model)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("consolidation"), dict) and isinstance(data.get("task"), dict)


def _as_text(flat: dict[str, Any]) -> dict[str, str]:
    """Config values as the report shows and compares them: strings as they are, the rest as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in flat.items()}
