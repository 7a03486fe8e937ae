"""Bring run folders written by earlier versions to today's format, once, so that every reader
(the report, resume, ``Results.load``) reads one format.

    python -m corp.migrate <folder> [--check]

For every run below ``<folder>`` (a ``config.json`` with a ``consolidation`` group):

- ``config.json`` gains every key the schema has and the file lacks, at its default (what the
  run meant by leaving it out);
- ``results.json`` gains ``mode`` (older files are training runs), ``dtype`` (the compute dtype
  ``model.dtype`` resolved to on the run's accelerator) and ``throughput`` (``{}``: not measured);
- every score file (``*.npz`` with an identity, corp/store.py) keyed the way an earlier version
  keyed it is re-keyed with today's identity of the same examples: before version 2 the identity
  held the whole task config (split sizes and data seed too), and until now ``model.dtype=auto``
  was written as ``auto`` instead of the dtype it resolved to. A packed benchmark sweep is
  unpacked first and packed again after (``benchmarks/score_archive.py``).

A file already in today's format is left byte for byte. ``--check`` changes nothing and exits with
status 1 when some file would change. Bad input: one line, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from corp.config import Config, flatten, to_plain
from corp.files import atomic_write_json


def schema_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """The schema's default of every key for this run's task and operator, as config.json holds it."""
    from corp.consolidate import OPERATORS
    from corp.tasks import TASKS

    task, method = config["task"]["name"], config["consolidation"]["name"]
    if task not in TASKS or method not in OPERATORS:
        raise ValueError(f"task.name={task!r}, consolidation.name={method!r}: not registered in this checkout")
    defaults = Config(task=TASKS[task].config_class(), consolidation=OPERATORS[method].config_class())
    return to_plain(defaults)


def migrate_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with every missing schema key at its default (existing keys and their order kept)."""
    out = json.loads(json.dumps(config))
    for dotted, value in flatten(schema_defaults(config)).items():
        if dotted.startswith(("output_dir", "paths.", "logger.")):  # where it wrote and how it was watched: not ours
            continue
        *groups, leaf = dotted.split(".")
        node = out
        for g in groups:
            node = node.setdefault(g, {})
        node.setdefault(leaf, value)
    return out


def _dtype(config: dict[str, Any]) -> str:
    """What ``model.dtype`` resolved to when the run did not record it (``corp.models.precision``)."""
    dtype = config["model"].get("dtype", "auto")
    if dtype != "auto":
        return dtype
    return "float32" if config.get("trainer", {}).get("accelerator", "cpu") == "cpu" else "bfloat16"


def migrate_results(results: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """``results`` with today's keys, in today's order (``Results.to_json``)."""
    from corp.results import Results

    filled = {"mode": "train", "dtype": _dtype(config), "throughput": {}, **results}
    return Results.from_json(filled).to_json()


def run_splits(config: dict[str, Any]) -> dict[str, list]:
    """The run's examples, rebuilt from its task config (no model needed)."""
    from omegaconf import OmegaConf

    from corp.tasks import TASKS, build_task
    from corp.tasks.base import SPLITS

    t = config["task"]
    schema = TASKS[t["name"]].config_class
    task = build_task(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), t)))
    return task.splits({s: t[f"{s}_size"] for s in SPLITS}, t["data_seed"])


def _contexts(config: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Today's store context of the run, and those earlier versions keyed the same scores with."""
    from corp.store import store_context

    batch = config["model"]["batch_size"]
    if batch is None or batch < 1:
        raise ValueError("model.batch_size was picked from free memory: the identity cannot be rebuilt")
    now = store_context(config, _dtype(config), batch)
    older = [{**now, "model": {**now["model"], "dtype": config["model"]["dtype"]}}]  # "auto" as written
    for ctx in list(older) + [now]:
        whole = {k: v for k, v in ctx.items() if k != "version"}
        older.append({**whole, "task": config["task"]})  # version 1: the whole task config
    return now, [c for c in older if c != now]


def migrate_scores(run: Path, config: dict[str, Any], write: bool = True) -> list[Path]:
    """Re-key ``run``'s score files saved under an earlier identity; returns those that changed."""
    from corp.store import split_identity

    files = sorted(f for f in run.rglob("*.npz") if not f.name.endswith(".tmp.npz"))
    if not files:
        return []
    now, older = _contexts(config)
    splits, changed = run_splits(config), []
    for file in files:
        with np.load(file, allow_pickle=False) as data:
            if "identity" not in data.files:
                continue
            arrays = {k: data[k] for k in data.files}
        split, indices = str(arrays["split"]), arrays["indices"].tolist() or None
        if split not in splits or str(arrays["identity"]) == split_identity(now, splits[split], indices):
            continue
        if not any(str(arrays["identity"]) == split_identity(c, splits[split], indices) for c in older):
            continue  # another run's examples or settings: not ours to re-key
        changed.append(file)
        if write:
            arrays["identity"] = np.array(split_identity(now, splits[split], indices))
            tmp = file.with_name(file.stem + ".tmp.npz")
            np.savez_compressed(tmp, **arrays)
            os.replace(tmp, file)
    return changed


def run_folders(folder: Path) -> list[Path]:
    found = []
    for cfg in sorted(folder.rglob("config.json")):
        try:
            data = json.loads(cfg.read_text())
        except ValueError:
            continue
        if (
            isinstance(data, dict)
            and isinstance(data.get("consolidation"), dict)
            and isinstance(data.get("task"), dict)
        ):
            found.append(cfg.parent)
    return found


def migrate(folder: Path, write: bool = True) -> list[Path]:
    """Migrate every run below ``folder``; returns the files that changed (or would)."""
    changed = []
    for run in run_folders(folder):
        config = json.loads((run / "config.json").read_text())
        new_config = migrate_config(config)
        todo = {run / "config.json": (config, new_config)}
        if (run / "results.json").exists():
            results = json.loads((run / "results.json").read_text())
            todo[run / "results.json"] = (results, migrate_results(results, new_config))
        for path, (old, new) in todo.items():
            if json.dumps(old) != json.dumps(new):
                changed.append(path)
                if write:
                    atomic_write_json(path, new)
        changed += migrate_scores(run, new_config, write)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corp.migrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"error: {args.folder}: not a folder", file=sys.stderr)
        return 2
    try:
        changed = migrate(args.folder, write=not args.check)
    except (ValueError, KeyError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    verb = "would change" if args.check else "migrated"
    print(f"{verb} {len(changed)} files under {args.folder}")
    for path in changed:
        print(f"  {path}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
