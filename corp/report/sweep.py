"""Summarise a folder of runs (a multirun sweep, or any tree of run folders) as a table and a chart.

Every ``results.json`` below the folder is one finished run; run folders without one (a
run still going, or stopped) are counted and skipped (``runs.py``). Runs are grouped into *rows*
by method (each operator names the rows it contributes, ``Operator.report_rows``: RandOpt its
top-1 model and one row per vote size K) and by the *grouping keys*,
and into *columns* by task (a task drawing from several data sets by its data set, e.g. gym's
``letter_counting``); each cell is the mean +- standard error of test accuracy over the runs in it
(the seeds), with the runs' own standard error over test examples. By default the grouping keys are
the config keys that take more than one value among the runs of one method on one task (e.g.
``consolidation.quantiles`` or
``perturbation.sigmas`` in a sweep over them), each shown as a column of its own; with none
(a methods x tasks x seeds comparison) the table is methods x tasks. ``by`` chooses them
instead; runs differing only in keys left out are pooled with the seeds. The base model is a
row of its own, split only by the keys that can change it (model and task settings)
(``table.py``). The table is written as markdown with plain comparisons (``markdown.py``) and
drawn as a chart (``chart.py``).
"""

from __future__ import annotations

from pathlib import Path

from corp.report.chart import chart
from corp.report.markdown import comparisons, markdown
from corp.report.runs import Run, load_runs
from corp.report.table import Row, Table, build_table

__all__ = ["Row", "Run", "Table", "build_table", "load_runs", "report"]


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
    seconds = sum(r.results.seconds for r in runs)
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
            f"Test accuracy (%) of {len(runs)} runs under `{folder}`: mean ± standard error over seeds "
            "(n runs; ±x/run: the runs' mean standard error over test examples).",
            *notes,
            "",
            markdown(table),
            "",
            *comparisons(table),
            "",
            f"Total run time: {seconds / 60:.1f} min. Chart: `{png}`.",
        ]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text(text + "\n")
    return text
