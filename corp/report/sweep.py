"""Summarise a folder of runs (a multirun sweep, or any tree of run folders) as tables and a chart.

Every ``results.json`` below the folder is one run. Runs are grouped into *rows* by method
(RandOpt contributes its top-1 model and one row per vote size K) and by any other config
key that varies across the runs (other than the seed and bookkeeping keys), and into
*columns* by task; each cell is the mean +- std of test accuracy over the runs in it (the
seeds). The base model is a row of its own.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# config keys that never define a group: bookkeeping, or already part of the method label
_IGNORED_PREFIXES = ("seed", "output_dir", "population.", "logger.", "export_model", "log_samples", "consolidation.")
_METHOD_NAMES = {"corp": "CoRP", "randopt": "RandOpt", "es": "ES", "soup": "Soup"}


@dataclass
class Row:
    """One line of the table: a method (and any swept setting), with its runs per task."""

    label: str
    order: tuple
    accuracy: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    members: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    example_evals: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    passes: int = 1


def load_runs(folder: Path) -> list[dict[str, Any]]:
    """(results, flattened config) of every finished run below ``folder``."""
    runs = []
    for res_file in sorted(folder.rglob("results.json")):
        cfg_file = res_file.with_name("config.json")
        config = _flatten(json.loads(cfg_file.read_text())) if cfg_file.exists() else {}
        runs.append({"results": json.loads(res_file.read_text()), "config": config, "dir": res_file.parent})
    return runs


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, list) else v
    return out


def swept_keys(runs: list[dict[str, Any]]) -> list[str]:
    """Config keys whose value differs between runs, except seeds, tasks and bookkeeping."""
    keys = sorted({k for r in runs for k in r["config"]})
    varying = [k for k in keys if len({str(r["config"].get(k)) for r in runs}) > 1]
    return [k for k in varying if not k.startswith(_IGNORED_PREFIXES) and not k.startswith("task.")]


def build_rows(runs: list[dict[str, Any]]) -> tuple[list[Row], list[str]]:
    """Rows (base first, then methods in a fixed order) and the task columns."""
    swept = swept_keys(runs)
    tasks = sorted({r["results"]["task"] for r in runs})
    rows: dict[tuple, Row] = {}

    def row(label: str, order: tuple) -> Row:
        if label not in rows:
            rows[label] = Row(label, order)
        return rows[label]

    base_seen: set[tuple] = set()
    for run in runs:
        res, cfg = run["results"], run["config"]
        task, budget = res["task"], res["budget"]
        setting = ", ".join(f"{k}={cfg.get(k)}" for k in swept)
        suffix = f" [{setting}]" if setting else ""
        data_key = (task, res["test"]["n"], str(cfg.get("task.data_seed")), setting)
        if data_key not in base_seen:  # the base is the same model in every run of a task: count it once
            base_seen.add(data_key)
            row(f"base{suffix}", (0, setting)).accuracy[task].append(res["test"]["base"])
        n = cfg.get("perturbation.population_size", "?")
        if res["method"] == "randopt":
            n = budget["members_scored"]
            _add(row(f"RandOpt top-1 (N={n}){suffix}", (1, setting, n)), task, res["test"]["final"], budget)
            for k, acc in res["test"].get("vote", {}).items():
                r = row(f"RandOpt vote K={k} (N={n}){suffix}", (2, setting, n, int(k)))
                _add(r, task, acc, budget)
                r.passes = int(k)
            continue
        name = _METHOD_NAMES.get(res["method"], res["method"])
        if res["method"] == "es":
            n = f"{cfg.get('consolidation.population_size') or n} x {cfg.get('consolidation.rounds', '?')} rounds"
        rank = {"ES": 3, "Soup": 4, "CoRP": 5}.get(name, 6)
        _add(row(f"{name} (N={n}){suffix}", (rank, setting, name)), task, res["test"]["final"], budget)
    return sorted(rows.values(), key=lambda r: r.order), tasks


def _add(row: Row, task: str, accuracy: float, budget: dict[str, Any]) -> None:
    row.accuracy[task].append(accuracy)
    row.members[task].append(budget["members_scored"])
    row.example_evals[task].append(budget["example_evals"])


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    v = 100 * np.asarray(values)
    return f"{v.mean():.1f} ± {v.std():.1f} (n={len(v)})" if len(v) > 1 else f"{v.mean():.1f} (n=1)"


def markdown(rows: list[Row], tasks: list[str]) -> str:
    """Test accuracy (%) per task, mean over tasks, and each row's budget."""
    head = ["method", *tasks, "mean", "members scored", "example evals", "passes / test example"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        means = [float(np.mean(r.accuracy[t])) for t in tasks if r.accuracy.get(t)]
        mean = f"{100 * np.mean(means):.1f}" if len(means) == len(tasks) else "–"
        members = _budget(r.members)
        evals = _budget(r.example_evals)
        passes = str(r.passes) if not r.label.startswith("base") else "1"
        lines.append("| " + " | ".join([r.label, *[_cell(r.accuracy.get(t, [])) for t in tasks], mean,
                                         members, evals, passes]) + " |")  # fmt: skip
    return "\n".join(lines)


def _budget(per_task: dict[str, list[float]]) -> str:
    values = [v for vs in per_task.values() for v in vs]
    if not values:
        return "–"
    lo, hi = min(values), max(values)
    return f"{lo:.0f}" if lo == hi else f"{lo:.0f}–{hi:.0f}"


def targets(rows: list[Row], tasks: list[str]) -> list[str]:
    """The comparison's three questions, answered from the table (mean over tasks, points)."""

    def mean_of(prefix: str) -> tuple[float | None, Row | None]:
        matches = [r for r in rows if r.label.startswith(prefix) and all(r.accuracy.get(t) for t in tasks)]
        if not matches:
            return None, None
        r = matches[-1] if prefix.startswith("RandOpt vote") else matches[0]
        return 100 * float(np.mean([np.mean(r.accuracy[t]) for t in tasks])), r

    base, _ = mean_of("base")
    corp, _ = mean_of("CoRP")
    top1, top1_row = mean_of("RandOpt top-1")
    vote, vote_row = mean_of("RandOpt vote")
    out = []
    if base is not None and corp is not None:
        out.append(f"- CoRP vs base: {corp - base:+.1f} points (mean over {len(tasks)} tasks; target >= +8)")
    if corp is not None and top1 is not None:
        out.append(f"- CoRP vs {top1_row.label}: {corp - top1:+.1f} points (target > 0)")
    if base is not None and corp is not None and vote is not None:
        gain = vote - base
        share = f"{(corp - base) / gain:.0%}" if gain > 0 else "n/a (the vote does not beat the base)"
        out.append(f"- share of the {vote_row.label} gain over base ({gain:+.1f}) that CoRP recovers: {share} "
                   "(target >= 50%)")  # fmt: skip
    return out


def chart(rows: list[Row], tasks: list[str], path: Path) -> Path:
    """Grouped bars: test accuracy per task and method, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(tasks) * max(1, len(rows)) / 3), 4.5))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(tasks))
    for i, r in enumerate(rows):
        means = [100 * np.mean(r.accuracy[t]) if r.accuracy.get(t) else np.nan for t in tasks]
        stds = [100 * np.std(r.accuracy[t]) if r.accuracy.get(t) else 0.0 for t in tasks]
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=r.label)
    ax.set_xticks(x, tasks)
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlabel("task")
    ax.set_title("Test accuracy by method (mean ± std over seeds)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(folder: Path, out_dir: Path | None = None) -> str:
    """The markdown report of ``folder``; also written to ``report.md`` with ``report.png``."""
    runs = load_runs(folder)
    if not runs:
        raise FileNotFoundError(f"no results.json below {folder}: is it a run or sweep folder?")
    rows, tasks = build_rows(runs)
    out_dir = out_dir or folder
    png = chart(rows, tasks, out_dir / "report.png")
    seconds = sum(r["results"].get("seconds", 0.0) for r in runs)
    text = "\n".join(
        [
            f"Test accuracy (%) of {len(runs)} runs under `{folder}`: mean ± std over seeds (n runs).",
            "",
            markdown(rows, tasks),
            "",
            *targets(rows, tasks),
            "",
            f"Total run time: {seconds / 60:.1f} min. Chart: `{png}`.",
        ]
    )
    (out_dir / "report.md").write_text(text + "\n")
    return text
