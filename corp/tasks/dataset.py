"""The base of tasks whose examples come from a data set (hub or local files), not a generator.

Splits: support and probe are drawn from ``task.train_split`` and test from ``task.test_split``
when the data has one, each shuffled with ``task.data_seed``; without a test split all three are
cut, disjoint, from the train split. A test question never appears in support or probe, and
few-shot prompts appear in none.
"""

from __future__ import annotations

import random
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from corp.tasks.base import Example, Task, TaskConfig
from corp.tasks.data import hub_rows, local_files, read_file


@dataclass
class DataConfig(TaskConfig):
    """``task.*`` options every dataset-backed task has."""

    dataset: str | None = None  # hub id, read with datasets.load_dataset when task.data_files is null
    subset: str | None = None  # the hub dataset's config name (e.g. "main" for openai/gsm8k)
    revision: str | None = None  # hub revision (branch, tag or commit) for reproducibility
    data_files: Any = None  # local data instead: a file, a folder of <split>.<format> files, or {split: file}
    train_split: str = "train"  # support and probe are drawn from it
    test_split: str | None = "test"  # test is drawn from it; null: cut from the train split too
    builtin_data: ClassVar[bool] = False  # True: with neither set, the task reads data a package ships


def column(row: dict[str, Any], name: str) -> Any:
    """``row[name]``, with an error naming the missing column and the ones there are."""
    if name not in row:
        raise ValueError(f"no column {name!r} (columns: {', '.join(sorted(map(str, row)))})")
    return row[name]


class DatasetTask(Task):
    """A task over records of a data set; subclasses turn one record into an ``Example``."""

    config_class = DataConfig

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        if not cfg.dataset and cfg.data_files is None and not self.config_class.builtin_data:
            raise ValueError("task.dataset and task.data_files are both empty: give a hub id or local files")
        self.train_split, self.test_split = str(cfg.train_split), cfg.test_split
        self.hub = (cfg.dataset, cfg.subset, cfg.revision)
        # Local files are checked now, so a wrong path fails before any model is loaded.
        self.files = None if cfg.data_files is None else local_files(cfg.data_files, self.train_split, self.test_split)
        self.source = (
            f"task.data_files={cfg.data_files!r}" if self.files else f"task.dataset={cfg.dataset!r}" if cfg.dataset
            else f"the data of task {self.name!r}"
        )  # fmt: skip
        self._data: dict[str, list[Example]] | None = None

    @abstractmethod
    def to_example(self, row: dict[str, Any]) -> Example | None:
        """One record as an example (None: skip it); raise ValueError (e.g. via ``column``) when it is malformed."""

    def builtin_rows(self) -> dict[str, list[dict[str, Any]]]:
        """Records a package ships, by split (tasks whose config sets ``builtin_data``)."""
        raise NotImplementedError

    def data(self) -> dict[str, list[Example]]:
        """Every split's examples, in file order (loaded once)."""
        if self._data is None:
            if self.files:
                rows = {split: read_file(path) for split, path in self.files.items()}
            elif not self.hub[0]:
                rows = self.builtin_rows()
            else:
                wanted = [self.train_split] + ([self.test_split] if self.test_split else [])
                rows = hub_rows(*self.hub[:2], wanted, revision=self.hub[2])
            self._data = {}
            for split, records in rows.items():
                out = []
                for i, row in enumerate(records):
                    try:
                        example = self.to_example(row)
                    except ValueError as err:
                        raise ValueError(f"{self.source}: {split} record {i}: {err}") from None
                    if example is not None:
                        out.append(example)
                self._data[split] = out
        return self._data

    @property
    def has_test(self) -> bool:
        return bool(self.test_split) and self.test_split in self.data()

    def _pool(self, split: str, seed: int, exclude: set[str]) -> list[Example]:
        """The split shuffled with ``seed``, duplicates and excluded keys dropped."""
        examples = list(self.data()[split])
        random.Random(seed).shuffle(examples)
        out: dict[str, Example] = {}
        for ex in examples:
            key = self.dedup_key(ex)
            if key not in out and key not in exclude:
                out[key] = ex
        return list(out.values())

    def _shots(self) -> set[str]:
        return {shot["prompt"] for shot in self.few_shot}

    def examples(self, seed: int, count: int) -> list[Example]:
        """Training examples (never a test question nor a few-shot prompt), shuffled with ``seed``."""
        exclude = self._shots()
        if self.has_test:
            exclude |= {self.dedup_key(ex) for ex in self.data()[self.test_split]}
        return self._pool(self.train_split, seed, exclude)[:count]

    def splits(self, sizes: dict[str, int], seed: int) -> dict[str, list[Example]]:
        if not self.has_test:
            return super().splits(sizes, seed)
        train = self.examples(seed, sizes["support"] + sizes["probe"])
        test = self._pool(self.test_split, seed, self._shots())[: sizes["test"]]
        for got, want, names, split in (
            (train, sizes["support"] + sizes["probe"], "task.support_size + task.probe_size", self.train_split),
            (test, sizes["test"], "task.test_size", self.test_split),
        ):
            if len(got) < want:
                raise ValueError(
                    f"task {self.name!r} has only {len(got)} usable examples in split {split!r} of {self.source}, "
                    f"but {names} asks for {want}"
                )
        cut = sizes["support"]
        return {"support": train[:cut], "probe": train[cut:], "test": test}
