"""The sweep table as markdown, and the comparisons of each compared method's rows.

Comparisons are plain differences in points (mean over tasks): a report states results and
leaves judging them to its reader.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from corp.consolidate.base import ENSEMBLE, REFERENCE
from corp.report.runs import MISSING
from corp.report.table import NOT_APPLICABLE, Row, Table
from corp.stats import mean_se


def _cell(values: list[float], run_se: list[float]) -> str:
    """Mean ± SE over the runs (seeds), the number of runs, and the runs' mean SE over test examples."""
    if not values:
        return "–"
    v = 100 * np.asarray(values)
    per_run = f"; ±{100 * np.mean(run_se):.1f}/run" if run_se else ""
    spread = f" ± {100 * mean_se(values):.1f}" if len(v) > 1 else ""
    return f"{v.mean():.1f}{spread} (n={len(v)}{per_run})"


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
    """Test accuracy (%) per task, mean over tasks (with more than one), and each row's budget; one column
    per grouping key."""
    several = len(table.tasks) > 1
    head = ["method", *table.keys, *table.tasks, *(["mean"] if several else []), "members scored", "example evals",
            "passes / test example"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.rows:
        mean = _mean_over_tasks(r, table.tasks)
        cells = [
            r.label,
            *r.setting,
            *[_cell(r.accuracy.get(t, []), r.run_se.get(t, [])) for t in table.tasks],
            *(["–" if mean is None else f"{mean:.1f}"] if several else []),
            _budget(r.members),
            _budget(r.example_evals),
            str(r.passes),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _matches(row: Row, setting: tuple[str, ...]) -> bool:
    """``row`` answers for ``setting``: equal on every key it has (a missing or n/a key matches)."""
    return all(v in (w, MISSING, NOT_APPLICABLE) for v, w in zip(row.setting, setting))


def _match(rows: list[Row], setting: tuple[str, ...], role: str | None, last: bool = False) -> Row | None:
    """The first (or last) row matching ``setting`` in ``role`` (None: the base row)."""
    found = [r for r in rows if (r.label == "base" if role is None else r.role == role) and _matches(r, setting)]
    return (found[-1] if last else found[0]) if found else None


def _mean_on(row: Row, tasks: list[str]) -> float:
    return 100 * float(np.mean([np.mean(row.accuracy[t]) for t in tasks]))


def comparisons(table: Table) -> list[str]:
    """Each compared method's row against the base, the first reference row and the largest ensemble
    of the same setting (points, mean over the tasks that row has results on, so a sweep still in
    progress is compared too)."""
    out = []
    for subject in [r for r in table.rows if r.compared]:
        tasks = [t for t in table.tasks if subject.accuracy.get(t)]
        rows = [r for r in table.rows if all(r.accuracy.get(t) for t in tasks)]
        base = _match(rows, subject.setting, None)
        reference = _match(rows, subject.setting, REFERENCE)
        ensemble = _match(rows, subject.setting, ENSEMBLE, last=True)  # rows list K ascending: the largest
        mean = partial(_mean_on, tasks=tasks)
        score, name = mean(subject), subject.method
        where = ", ".join(f"{k}={v}" for k, v in zip(table.keys, subject.setting))
        tag = f"[{where}] " if where else ""
        if len(tasks) == 1:
            over = f"on {tasks[0]}"
        elif len(tasks) == len(table.tasks):
            over = f"mean over {len(tasks)} tasks"
        else:
            over = f"mean over {', '.join(tasks)}: {name}'s finished tasks"
        if base is not None:
            out.append(f"- {tag}{name} vs base: {score - mean(base):+.1f} points ({over})")
        if reference is not None:
            out.append(f"- {tag}{name} vs {reference.label}: {score - mean(reference):+.1f} points")
        if base is not None and ensemble is not None:
            gain = mean(ensemble) - mean(base)
            share = f"{(score - mean(base)) / gain:.0%}" if gain > 0 else "n/a (the vote does not beat the base)"
            out.append(
                f"- {tag}share of the {ensemble.label} gain over base ({gain:+.1f}) that {name} recovers: {share}"
            )
    return out
