"""Summarise a folder of runs (a multirun sweep, or any tree of run folders) as a table and a chart.

Every ``results.json`` below the folder is one finished run; run folders without one (a
run still going, or stopped) are counted and skipped. Runs are grouped into *rows* by method
(RandOpt contributes its top-1 model and one row per vote size K) and by the *grouping keys*,
and into *columns* by task; each cell is the mean +- std of test accuracy over the runs in it
(the seeds). By default the grouping keys are the config keys that take more than one value
among the runs of one method on one task (e.g. ``consolidation.quantiles`` or
``perturbation.sigmas`` in a sweep over them), each shown as a column of its own; with none
(a methods x tasks x seeds comparison) the table is methods x tasks. ``by`` chooses them
instead; runs differing only in keys left out are pooled with the seeds. The base model is a
row of its own, split only by the keys that can change it (model and task settings).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

# config keys that never define a group: they do not change what a run computes
_BOOKKEEPING = ("seed", "output_dir", "population.", "logger.", "export_model", "log_samples", "trainer.",
                "resume", "checkpoint_every_s")  # fmt: skip
_LAYOUT = ("consolidation.name", "task.name")  # always the rows' method and the columns
_BASE_PREFIXES = ("model.", "task.")  # the only settings that change the base model's score
_METHOD_NAMES = {"corp": "CoRP", "randopt": "RandOpt", "es": "ES", "soup": "Soup"}
_MISSING = "–"  # a key this run's config does not have (e.g. another method's option)
_NOT_APPLICABLE = "·"  # a grouping key that cannot change this row (the base model)


@dataclass
class Run:
    dir: Path
    results: dict[str, Any]
    config: dict[str, str]  # flattened config, values as JSON text

    @property
    def method(self) -> str:
        return self.results.get("method") or self.results.get("mode", "?")

    @property
    def task(self) -> str:
        return self.results.get("task") or self.config.get("task.name", "?")

    def value(self, key: str) -> str:
        return self.config.get(key, _MISSING)


@dataclass
class Row:
    """One line of the table: a method and one value per grouping key, with its runs per task."""

    label: str
    setting: tuple[str, ...]
    order: tuple
    accuracy: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    members: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    example_evals: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    passes: int = 1


@dataclass
class Table:
    rows: list[Row]
    tasks: list[str]
    keys: list[str]  # grouping keys, one column each
    pooled: list[str]  # keys that vary within a method and task but were not chosen: pooled with seeds


# -- reading runs ------------------------------------------------------------------------------


def load_runs(folder: Path) -> tuple[list[Run], list[Path]]:
    """Finished runs below ``folder``, and the run folders without results.json (unfinished)."""
    runs = []
    for res_file in sorted(folder.rglob("results.json")):
        cfg_file = res_file.with_name("config.json")
        config = _flatten(json.loads(cfg_file.read_text())) if cfg_file.exists() else {}
        runs.append(Run(res_file.parent, json.loads(res_file.read_text()), config))
    unfinished = [f.parent for f in sorted(folder.rglob("config.json"))
                  if not (f.parent / "results.json").exists() and _is_run_config(f)]  # fmt: skip
    return runs, unfinished


def _is_run_config(path: Path) -> bool:
    """A corp run's resolved config (not, e.g., the config.json of an exported model)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("consolidation"), dict) and isinstance(data.get("task"), dict)


def _flatten(data: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, str) else json.dumps(v)
    return out


# -- choosing the grouping keys --------------------------------------------------------------------


def _is_bookkeeping(key: str) -> bool:
    return key.startswith(_BOOKKEEPING) or key in _LAYOUT


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


def _sort_value(text: str) -> tuple:
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
    """Rows (base first, then methods in a fixed order, each by setting) and the task columns."""
    keys = grouping_keys(runs, by)
    tasks = sorted({r.task for r in runs})
    rows: dict[tuple, Row] = {}

    def row(label: str, setting: tuple[str, ...], order: tuple) -> Row:
        if (label, setting) not in rows:
            rows[(label, setting)] = Row(label, setting, (order[0], tuple(_sort_value(v) for v in setting), *order[1:]))
        return rows[(label, setting)]

    base_seen: set[tuple] = set()
    for run in runs:
        res = run.results
        setting = tuple(run.value(k) for k in keys)
        base_setting = tuple(v if k.startswith(_BASE_PREFIXES) else _NOT_APPLICABLE for k, v in zip(keys, setting))
        test = res["test"]
        data_key = (run.task, test["n"], run.value("task.data_seed"), res.get("model"), base_setting)
        if data_key not in base_seen:  # the base is the same model in every run of a task: count it once
            base_seen.add(data_key)
            row("base", base_setting, (0,)).accuracy[run.task].append(test["base"])
        budget = res.get("budget", {})
        n = run.config.get("perturbation.population_size", "?")
        if run.method == "randopt":
            n = budget.get("members_scored", n)
            _add(row(f"RandOpt top-1 (N={n})", setting, (1, n)), run.task, test["final"], budget)
            for k, acc in test.get("vote", {}).items():
                r = row(f"RandOpt vote K={k} (N={n})", setting, (2, n, int(k)))
                _add(r, run.task, acc, budget)
                r.passes = int(k)
            continue
        if run.method == "eval":
            name = f"evaluated {Path(str(res.get('evaluated', '?'))).name}"
            _add(row(name, setting, (7, name)), run.task, test["final"], budget)
            continue
        name = _METHOD_NAMES.get(run.method, run.method)
        if run.method == "es":
            es_n = run.config.get("consolidation.population_size", "null")
            n = f"{n if es_n == 'null' else es_n} x {run.value('consolidation.rounds')} rounds"
        rank = {"ES": 3, "Soup": 4, "CoRP": 5}.get(name, 6)
        _add(row(f"{name} (N={n})", setting, (rank, name)), run.task, test["final"], budget)
    pooled = [k for k in swept_keys(runs) if k not in keys]
    return Table(sorted(rows.values(), key=lambda r: r.order), tasks, keys, pooled)


def _add(row: Row, task: str, accuracy: float, budget: dict[str, Any]) -> None:
    row.accuracy[task].append(accuracy)
    if "members_scored" in budget:
        row.members[task].append(budget["members_scored"])
        row.example_evals[task].append(budget["example_evals"])


# -- markdown --------------------------------------------------------------------------------------


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    v = 100 * np.asarray(values)
    return f"{v.mean():.1f} ± {v.std():.1f} (n={len(v)})" if len(v) > 1 else f"{v.mean():.1f} (n=1)"


def _budget(per_task: dict[str, list[float]]) -> str:
    values = [v for vs in per_task.values() for v in vs]
    if not values:
        return "–"
    lo, hi = min(values), max(values)
    return f"{lo:.0f}" if lo == hi else f"{lo:.0f}–{hi:.0f}"


def _mean_over_tasks(row: Row, tasks: list[str]) -> float | None:
    means = [float(np.mean(row.accuracy[t])) for t in tasks if row.accuracy.get(t)]
    return 100 * float(np.mean(means)) if means and len(means) == len(tasks) else None


def markdown(table: Table) -> str:
    """Test accuracy (%) per task, mean over tasks, and each row's budget; one column per grouping key."""
    head = ["method", *table.keys, *table.tasks, "mean", "members scored", "example evals", "passes / test example"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.rows:
        mean = _mean_over_tasks(r, table.tasks)
        cells = [
            r.label,
            *r.setting,
            *[_cell(r.accuracy.get(t, [])) for t in table.tasks],
            "–" if mean is None else f"{mean:.1f}",
            _budget(r.members),
            _budget(r.example_evals),
            "1" if r.label == "base" else str(r.passes),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _matches(row: Row, setting: tuple[str, ...]) -> bool:
    """``row`` answers for ``setting``: equal on every key it has (a missing or n/a key matches)."""
    return all(v in (w, _MISSING, _NOT_APPLICABLE) for v, w in zip(row.setting, setting))


def _match(rows: list[Row], prefix: str, setting: tuple[str, ...], last: bool = False) -> Row | None:
    found = [r for r in rows if r.label.startswith(prefix) and _matches(r, setting)]
    return (found[-1] if last else found[0]) if found else None


def _mean_on(row: Row, tasks: list[str]) -> float:
    return 100 * float(np.mean([np.mean(row.accuracy[t]) for t in tasks]))


def targets(table: Table) -> list[str]:
    """The comparison's three questions, answered from the table per CoRP row (points, mean over tasks).

    Each comparison uses the tasks CoRP has results on, so a sweep still in progress answers too."""
    out = []
    for corp_row in [r for r in table.rows if r.label.startswith("CoRP")]:
        tasks = [t for t in table.tasks if corp_row.accuracy.get(t)]
        rows = [r for r in table.rows if all(r.accuracy.get(t) for t in tasks)]
        base = _match(rows, "base", corp_row.setting)
        top1 = _match(rows, "RandOpt top-1", corp_row.setting)
        vote = _match(rows, "RandOpt vote", corp_row.setting, last=True)  # the largest K
        mean = partial(_mean_on, tasks=tasks)
        corp = mean(corp_row)
        where = ", ".join(f"{k}={v}" for k, v in zip(table.keys, corp_row.setting))
        tag = f"[{where}] " if where else ""
        over = f"{len(tasks)} tasks" if len(tasks) == len(table.tasks) else f"{', '.join(tasks)}: CoRP's finished tasks"
        if base is not None:
            out.append(f"- {tag}CoRP vs base: {corp - mean(base):+.1f} points (mean over {over}; target >= +8)")
        if top1 is not None:
            out.append(f"- {tag}CoRP vs {top1.label}: {corp - mean(top1):+.1f} points (target > 0)")
        if base is not None and vote is not None:
            gain = mean(vote) - mean(base)
            share = f"{(corp - mean(base)) / gain:.0%}" if gain > 0 else "n/a (the vote does not beat the base)"
            out.append(f"- {tag}share of the {vote.label} gain over base ({gain:+.1f}) that CoRP recovers: {share} "
                       "(target >= 50%)")  # fmt: skip
    return out


# -- chart ---------------------------------------------------------------------------------------------


def _legend_label(row: Row, keys: list[str]) -> str:
    shown = [f"{k}={v}" for k, v in zip(keys, row.setting) if v not in (_MISSING, _NOT_APPLICABLE)]
    return f"{row.label} [{', '.join(shown)}]" if shown else row.label


def _numeric_key(table: Table) -> bool:
    """One grouping key whose values are all plain numbers: plot accuracy against it."""
    if len(table.keys) != 1:
        return False
    values = {r.setting[0] for r in table.rows} - {_MISSING, _NOT_APPLICABLE}
    return len(values) > 1 and all(_sort_value(v)[0] == 0 and len(_sort_value(v)[1]) == 1 for v in values)


def chart(table: Table, path: Path) -> Path:
    """Accuracy against a numeric swept key (one panel per task), else grouped bars per task and row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if _numeric_key(table):
        fig = _line_chart(plt, table)
    else:
        fig = _bar_chart(plt, table)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _bar_chart(plt, table: Table):
    rows, tasks = table.rows, table.tasks
    # the legend goes below the bars: labels with settings are long, and a side legend squeezes the axes
    fig, ax = plt.subplots(figsize=(max(8.0, 0.45 * len(tasks) * len(rows) + 2.0), 4.0 + 0.2 * len(rows)))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(tasks))
    for i, r in enumerate(rows):
        means = [100 * np.mean(r.accuracy[t]) if r.accuracy.get(t) else np.nan for t in tasks]
        stds = [100 * np.std(r.accuracy[t]) if r.accuracy.get(t) else 0.0 for t in tasks]
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
               label=_legend_label(r, table.keys))  # fmt: skip
    ax.set_xticks(x, tasks)
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlabel("task")
    by = f"\nrows split by {', '.join(table.keys)}" if table.keys else ""
    ax.set_title(f"Test accuracy by method (mean ± std over seeds){by}", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2 if len(rows) > 6 else 1)
    return fig


def _line_chart(plt, table: Table):
    key, tasks = table.keys[0], table.tasks
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks) + 2.5, 4.2), squeeze=False)
    lines: dict[str, list[Row]] = defaultdict(list)
    for r in table.rows:
        lines[r.label].append(r)
    for ax, task in zip(axes[0], tasks):
        for i, (label, group) in enumerate(lines.items()):
            points = sorted((_sort_value(r.setting[0])[1][0], r.accuracy[task]) for r in group
                            if r.accuracy.get(task) and r.setting[0] not in (_MISSING, _NOT_APPLICABLE))  # fmt: skip
            flat = [
                r.accuracy[task] for r in group if r.accuracy.get(task) and r.setting[0] in (_MISSING, _NOT_APPLICABLE)
            ]
            if points:
                xs = [p[0] for p in points]
                ys = [100 * np.mean(p[1]) for p in points]
                es = [100 * np.std(p[1]) for p in points]
                ax.errorbar(xs, ys, yerr=es, fmt="o-", capsize=2, color=f"C{i}", label=label)
            for values in flat:  # a row the key does not change (the base): a horizontal line
                ax.axhline(100 * np.mean(values), ls="--", color=f"C{i}", label=f"{label} (any {key})")
        ax.set_xlabel(key)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{task}: test accuracy vs {key} (mean ± std over seeds)", fontsize=9)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


# -- the report ----------------------------------------------------------------------------------------


def report(folder: Path, out_dir: Path | None = None, by: list[str] | None = None) -> str:
    """The markdown report of ``folder``; also written to ``report.md`` with ``report.png``.

    Raises FileNotFoundError when no run below ``folder`` has finished, ValueError for a bad ``by``."""
    runs, unfinished = load_runs(folder)
    if not runs:
        extra = f" ({len(unfinished)} unfinished run folders)" if unfinished else ""
        raise FileNotFoundError(f"no results.json below {folder}{extra}: is it a run or sweep folder?")
    table = build_table(runs, by)
    out_dir = out_dir or folder
    png = chart(table, out_dir / "report.png")
    seconds = sum(r.results.get("seconds", 0.0) for r in runs)
    notes = []
    if table.keys:
        notes.append(f"Rows: method x {', '.join(f'`{k}`' for k in table.keys)}.")
    if table.pooled:
        notes.append(f"Pooled with the seeds (not a grouping key): {', '.join(f'`{k}`' for k in table.pooled)}.")
    if unfinished:
        names = ", ".join(f"`{p.relative_to(folder)}`" for p in unfinished[:5])
        more = f" and {len(unfinished) - 5} more" if len(unfinished) > 5 else ""
        notes.append(f"Skipped {len(unfinished)} unfinished runs (no results.json): {names}{more}.")
    text = "\n".join(
        [
            f"Test accuracy (%) of {len(runs)} runs under `{folder}`: mean ± std over seeds (n runs).",
            *notes,
            "",
            markdown(table),
            "",
            *targets(table),
            "",
            f"Total run time: {seconds / 60:.1f} min. Chart: `{png}`.",
        ]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text(text + "\n")
    return text
