"""The sweep table: runs grouped into rows (method x grouping keys) and task columns.

What rows a method adds and how they are labelled comes from the operator registry
(``Operator.report_rows``); this module only places them. Rows are listed base first, then
methods in registry order (unknown methods after them, evaluated directions last), each
method block by block and each block by setting.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from corp.config import result_neutral
from corp.consolidate import OPERATORS
from corp.consolidate.base import report_row
from corp.report.runs import Run
from corp.results import Budget
from corp.stats import binary_se

_LAYOUT = ("consolidation.name", "task.name")  # always the rows' method and the columns
_BASE_PREFIXES = ("model.", "task.")  # the only settings that change the base model's score
NOT_APPLICABLE = "·"  # a grouping key that cannot change this row (the base model)


@dataclass
class Row:
    """One line of the table: a method and one value per grouping key, with its runs per task."""

    label: str
    setting: tuple[str, ...]
    order: tuple
    accuracy: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    run_se: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # each run's SE over examples
    members: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    example_evals: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    passes: int = 1
    method: str = ""  # the method's display name ("" for the base and evaluated directions)
    compared: bool = False  # the method's ``Operator.compared``
    role: str = ""  # ``ReportRow.role``


@dataclass
class Table:
    rows: list[Row]
    tasks: list[str]
    keys: list[str]  # grouping keys, one column each
    pooled: list[str]  # keys that vary within a method and task but were not chosen: pooled with seeds


# -- choosing the grouping keys --------------------------------------------------------------------


def _is_bookkeeping(key: str) -> bool:
    """Keys that never define a group: result-neutral ones, the seed (pooled as replicates) and the layout."""
    return result_neutral(key) or key == "seed" or key in _LAYOUT


def _values(runs: list[Run], key: str) -> set[str]:
    """The values ``key`` takes among the runs that have it (one method's options are absent in another's)."""
    return {r.config[key] for r in runs if key in r.config}


def varying_keys(runs: list[Run]) -> list[str]:
    """Config keys (other than seeds, bookkeeping, method and task) set to different values in different runs."""
    keys = sorted({k for r in runs for k in r.config})
    return [k for k in keys if not _is_bookkeeping(k) and len(_values(runs, k)) > 1]


def swept_keys(runs: list[Run]) -> list[str]:
    """Varying keys that take more than one value among the runs of one method on one task.

    Keys that only tell methods or tasks apart (one method's options, one task's settings)
    are already the rows and columns, so they do not split rows."""
    cells: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for r in runs:
        cells[(r.method, r.task)].append(r)
    return [k for k in varying_keys(runs) if any(len(_values(cell, k)) > 1 for cell in cells.values())]


def grouping_keys(runs: list[Run], by: list[str] | None) -> list[str]:
    """``by`` checked against the runs (every key must vary), or the swept keys when ``by`` is None."""
    if by is None:
        return swept_keys(runs)
    allowed = varying_keys(runs)
    every = {k for r in runs for k in r.config}
    for key in by:
        if key in allowed:
            continue
        if key in _LAYOUT:
            why = "is already the table's layout (methods are rows, tasks columns)"
        elif key in every and _is_bookkeeping(key):
            why = "is bookkeeping (seeds are what cells average over)"
        elif key in every:
            why = f"has one value in all {len(runs)} runs (in every run that sets it)"
        else:
            why = f"is not a config key of these {len(runs)} runs"
        raise ValueError(f"--by {key}: {why}; keys that vary: {', '.join(allowed) or 'none'}")
    return list(dict.fromkeys(by))


# -- building the table ------------------------------------------------------------------------------


def sort_value(text: str) -> tuple:
    """Numbers (and lists of numbers) in numeric order, anything else after them as text."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return (2, text)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, (value,))
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return (0, tuple(value))
    return (1, text)


def build_table(runs: list[Run], by: list[str] | None = None) -> Table:
    """Rows (base first, then the methods, each by setting) and the task columns."""
    keys = grouping_keys(runs, by)
    tasks = sorted({r.task for r in runs})
    rows: dict[tuple, Row] = {}
    methods = list(OPERATORS)

    def row(label: str, setting: tuple[str, ...], group: tuple, sort: tuple = ()) -> Row:
        if (label, setting) not in rows:
            rows[(label, setting)] = Row(label, setting, (*group, tuple(sort_value(v) for v in setting), *sort))
        return rows[(label, setting)]

    base_seen: set[tuple] = set()
    for run in runs:
        res = run.results
        setting = tuple(run.value(k) for k in keys)
        base_setting = tuple(v if k.startswith(_BASE_PREFIXES) else NOT_APPLICABLE for k, v in zip(keys, setting))
        test = res.splits["test"]
        data_key = (run.task, test.n, run.value("task.data_seed"), res.model, base_setting)
        if data_key not in base_seen:  # the base is the same model in every run of a task: count it once
            base_seen.add(data_key)
            _add(row("base", base_setting, (0, 0)), run.task, test.base, test.n, None)
        budget = res.budget
        if run.is_eval:
            name = f"evaluated {Path(str(res.evaluated)).name}"
            _add(row(name, setting, (len(methods) + 2, 0), (name,)), run.task, test.final, test.n, budget)
            continue
        op = OPERATORS.get(run.method)
        if op is None:  # an operator this checkout does not know: one plain row, after the known ones
            group, extra, method, compared = len(methods) + 1, (run.method,), run.method, False
            contributed = [report_row(run.method, res, run.plain)]
        else:
            group, extra, method, compared = 1 + methods.index(run.method), (), op.display_name or op.name, op.compared
            contributed = op.report_rows(res, run.plain)
        for c in contributed:
            r = row(c.label, setting, (group, c.block), (*c.sort, *extra))
            _add(r, run.task, c.accuracy, test.n, budget)
            r.passes, r.method, r.compared, r.role = c.passes, method, compared, c.role
    pooled = [k for k in swept_keys(runs) if k not in keys]
    return Table(sorted(rows.values(), key=lambda r: r.order), tasks, keys, pooled)


def _add(row: Row, task: str, accuracy: float, n: int, budget: Budget | None) -> None:
    """One run's test accuracy (over ``n`` examples) in ``row``; its SE follows from the two (corp.stats)."""
    row.accuracy[task].append(accuracy)
    row.run_se[task].append(binary_se(accuracy, n))
    if budget is not None:
        row.members[task].append(budget.members_scored)
        row.example_evals[task].append(budget.example_evals)
