"""Rows for dataset-backed tasks: local files (JSONL, JSON, CSV, Parquet) or a hub dataset.

Local files are read directly (no cache, no network); anything else goes through
``datasets.load_dataset``. Every error names the ``task.*`` key to fix.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

from corp.tasks.answers import MissingExtra

FORMATS = (".jsonl", ".json", ".csv", ".parquet")
Rows = list[dict[str, Any]]


def _format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    return next((f for f in FORMATS if name.endswith(f)), "")


def read_file(path: str | Path, key: str = "task.data_files") -> Rows:
    """All records of one local file; the format comes from its suffix (``.gz`` allowed for JSON/JSONL)."""
    path = Path(path).expanduser()
    where = f"{key}={str(path)!r}"
    if not path.is_file():
        raise ValueError(f"{where}: file not found")
    fmt = _format(path)
    if not fmt:
        raise ValueError(f"{where}: unknown format; allowed suffixes: {', '.join(FORMATS)}")
    if fmt == ".parquet":
        import pyarrow.parquet as pq  # comes with `datasets`

        return pq.read_table(path).to_pylist()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        if fmt == ".csv":
            return [dict(row) for row in csv.DictReader(f)]
        if fmt == ".json":
            try:
                data = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON ({err})") from None
            if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
                data = next(iter(data.values()))  # {"data": [...]}-style wrappers
            if not isinstance(data, list):
                raise ValueError(f"{where}: a .json file must hold a list of records")
            rows = data
        else:
            rows = []
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{where}: line {n} is not JSON ({err})") from None
    bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
    if bad is not None:
        raise ValueError(f"{where}: record {bad} is {type(rows[bad]).__name__}, not an object")
    return rows


def local_files(data_files: Any, train_split: str, test_split: str | None) -> dict[str, Path]:
    """``task.data_files`` as {split: file}: one file (train only), a folder of ``<split>.<format>`` files,
    or a mapping {split: file}."""
    if isinstance(data_files, (str, Path)):
        path = Path(data_files).expanduser()
        if path.is_dir():
            found = {}
            for split in (train_split, test_split):
                matches = sorted(p for p in path.iterdir() if split and p.name.split(".")[0] == split and _format(p))
                if matches:
                    found[split] = matches[0]
            if train_split not in found:
                raise ValueError(
                    f"task.data_files={str(data_files)!r}: folder has no {train_split}.<format> file "
                    f"(formats: {', '.join(FORMATS)}; task.train_split={train_split!r})"
                )
            return found
        if not path.is_file():
            raise ValueError(f"task.data_files={str(data_files)!r}: file not found")
        return {train_split: path}
    if hasattr(data_files, "items"):
        files = {str(k): Path(str(v)).expanduser() for k, v in data_files.items()}
        if train_split not in files:
            raise ValueError(f"task.data_files has splits {sorted(files)}, but task.train_split={train_split!r}")
        for split, path in files.items():
            if not path.is_file():
                raise ValueError(f"task.data_files.{split}={str(path)!r}: file not found")
        return {s: p for s, p in files.items() if s in (train_split, test_split)}
    raise ValueError(f"task.data_files={data_files!r}: give a file, a folder or a mapping {{split: file}}")


def hub_rows(dataset: str, subset: str | None, splits: list[str], revision: str | None = None) -> dict[str, Rows]:
    """The named splits of a hub dataset (downloaded and cached by ``datasets``)."""
    try:
        import datasets
    except ImportError:
        raise MissingExtra(f"task.dataset={dataset!r} needs the `datasets` package: pip install datasets") from None
    try:
        loaded = datasets.load_dataset(dataset, subset, revision=revision)
    except Exception as err:  # offline, unknown id, unknown subset: all a config problem here
        raise ValueError(
            f"task.dataset={dataset!r} (task.subset={subset!r}) could not be loaded: {type(err).__name__}: {err}. "
            "Without hub access, point task.data_files at local files."
        ) from None
    missing = [s for s in splits if s not in loaded]
    if missing:
        raise ValueError(
            f"task.dataset={dataset!r} has splits {sorted(loaded)}; missing {missing} "
            "(set task.train_split / task.test_split; task.test_split=null cuts test from train)"
        )
    return {s: loaded[s].to_list() for s in splits}
