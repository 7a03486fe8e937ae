"""``analysis.png``: per population, split-half overlap vs rank in each space against the null, and the spectra."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from corp.analyze.split_half import PopulationResult, SpaceResult  # noqa: E402


def _overlap_panel(ax, res: SpaceResult) -> None:
    ax.set_title(f"{res.space} space (dim {res.dimension})", fontsize=9)
    ax.set_xlabel("rank k")
    ax.set_ylabel("split-half overlap ||UᵀV||²/k")
    if not res.ranks:
        ax.text(0.5, 0.5, _wrap(res.verdict), ha="center", va="center", fontsize=7, transform=ax.transAxes, wrap=True)
        ax.set_xticks([])
        return
    ranks = np.array(res.ranks)
    lo, hi = np.array(res.null_band).T
    ax.fill_between(ranks, lo, hi, color="0.8", label="null 5–95%")
    ax.plot(ranks, res.null_overlap, "--", color="0.4", label="null mean")
    # The band is the null's spread of split-averaged overlaps: the statistic's reference, so the
    # rewarded curve is drawn as its split average too (its per-split spread is in the JSON).
    ax.plot(ranks, res.overlap, "o-", color="C3", label="rewarded halves (mean over splits)")
    for r in res.detected_ranks:
        ax.annotate("*", (r, res.overlap[r - 1]), textcoords="offset points", xytext=(0, 6), ha="center", color="C3")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(ranks)
    verdict = "detected" if res.detected else "not detected"
    ax.legend(
        fontsize=6, loc="upper left", title=f"{verdict} (corrected p {res.p_min_corrected:.2g})", title_fontsize=6
    )


def _spectrum_panel(ax, pop: PopulationResult) -> None:
    ax.set_title("elite cloud spectrum", fontsize=9)
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("share of variance")
    for i, res in enumerate(pop.spaces):
        c = res.cloud
        if c is None or not any(c.spectrum):
            continue
        n = max(1, int(np.count_nonzero(c.spectrum)))
        idx = np.arange(1, n + 1)
        label = f"{res.space}: eff. rank {c.effective_rank:.1f}, κ {c.kappa:.2g}"
        ax.plot(idx, c.spectrum[:n], "o-", ms=3, color=f"C{i}", label=label)
        null_label = f"{res.space} null: eff. rank {c.null_effective_rank:.1f}, κ {c.null_kappa:.2g}"
        ax.plot(idx, c.null_spectrum[:n], "--", color=f"C{i}", alpha=0.6, label=null_label)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=6, loc="lower left")


def _wrap(text: str, width: int = 48) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def analysis_png(results: list[PopulationResult], title: str, path: Path) -> Path:
    rows = len(results)
    fig, axes = plt.subplots(rows, 3, figsize=(13, 3.6 * rows), squeeze=False)
    for row, pop in zip(axes, results):
        for ax, res in zip(row[:2], pop.spaces):
            _overlap_panel(ax, res)
        _spectrum_panel(row[2], pop)
        name = f"round {pop.round}" if pop.round is not None else Path(pop.file).name
        row[0].annotate(
            f"{name}: {pop.members} members x {pop.examples} {pop.split} examples, elite {pop.elite_size}",
            (0, 1.18), xycoords="axes fraction", fontsize=9, fontweight="bold",
        )  # fmt: skip
    fig.suptitle(_wrap(title, 110), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
