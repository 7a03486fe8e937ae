"""The sweep chart: accuracy against a numeric swept key, else grouped bars per task and row."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from corp.report.runs import MISSING
from corp.report.table import NOT_APPLICABLE, Row, Table, sort_value
from corp.stats import mean_se


def _legend_label(row: Row, keys: list[str]) -> str:
    shown = [f"{k}={v}" for k, v in zip(keys, row.setting) if v not in (MISSING, NOT_APPLICABLE)]
    return f"{row.label} [{', '.join(shown)}]" if shown else row.label


def _numeric_key(table: Table) -> bool:
    """One grouping key whose values are all plain numbers: plot accuracy against it."""
    if len(table.keys) != 1:
        return False
    values = {r.setting[0] for r in table.rows} - {MISSING, NOT_APPLICABLE}
    return len(values) > 1 and all(sort_value(v)[0] == 0 and len(sort_value(v)[1]) == 1 for v in values)


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
        ses = [100 * mean_se(r.accuracy[t]) if r.accuracy.get(t) else 0.0 for t in tasks]
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, means, width, yerr=ses, capsize=2,
               label=_legend_label(r, table.keys))  # fmt: skip
    ax.set_xticks(x, tasks)
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlabel("task")
    by = f"\nrows split by {', '.join(table.keys)}" if table.keys else ""
    ax.set_title(f"Test accuracy by method (mean ± SE over seeds){by}", fontsize=10)
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
            points = sorted((sort_value(r.setting[0])[1][0], r.accuracy[task]) for r in group
                            if r.accuracy.get(task) and r.setting[0] not in (MISSING, NOT_APPLICABLE))  # fmt: skip
            flat = [
                r.accuracy[task] for r in group if r.accuracy.get(task) and r.setting[0] in (MISSING, NOT_APPLICABLE)
            ]
            if points:
                xs = [p[0] for p in points]
                ys = [100 * np.mean(p[1]) for p in points]
                es = [100 * mean_se(p[1]) for p in points]
                ax.errorbar(xs, ys, yerr=es, fmt="o-", capsize=2, color=f"C{i}", label=label)
            for values in flat:  # a row the key does not change (the base): a horizontal line
                ax.axhline(100 * np.mean(values), ls="--", color=f"C{i}", label=f"{label} (any {key})")
        ax.set_xlabel(key)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{task}: test accuracy vs {key} (mean ± SE over seeds)", fontsize=9)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
