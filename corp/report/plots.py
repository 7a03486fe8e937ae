"""PNG plots of a run, readable without the code: title, labelled axes, legend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def population_rewards(
    member_rewards: np.ndarray,
    sigmas: np.ndarray,
    base: float,
    final: float,
    path: Path,
    split: str = "support",
) -> Path:
    """Histogram of members' mean rewards (stacked by sigma) with base and final marked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    levels = sorted(set(sigmas.tolist()))
    lo = min(member_rewards.min(), base, final)
    hi = max(member_rewards.max(), base, final)
    bins = np.linspace(lo - 1e-9, hi + 1e-9, min(30, max(8, len(member_rewards) // 2)) + 1)
    ax.hist(
        [member_rewards[sigmas == s] for s in levels],
        bins=bins,
        stacked=True,
        label=[f"member, σ={s:g}" for s in levels],
        alpha=0.8,
    )
    ax.axvline(base, color="black", linestyle="--", linewidth=2, label=f"base model ({base:.3f})")
    ax.axvline(final, color="tab:red", linewidth=2.5, label=f"consolidated model ({final:.3f})")
    ax.set_xlabel(f"mean reward on the {split} split")
    ax.set_ylabel("number of population members")
    ax.set_title(f"Population of {len(member_rewards)} perturbed models vs base and consolidated")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
