"""PNG plots of a run, readable without the code: title, labelled axes, legend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def population_rewards(
    member_rewards: np.ndarray,
    sigmas: np.ndarray,
    base: float,
    final: float,
    path: Path,
    split: str = "support",
) -> Path:
    """Histogram of members' mean rewards (stacked by sigma) with base and final marked."""
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
    return _save(fig, path)


def _clamp_to_share(ax) -> None:
    """Keep an accuracy axis inside [0, 1] (plus a margin) whatever the autoscale picked."""
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, -0.02), min(high, 1.02))


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def reward_vs_sigma(sigmas: np.ndarray, rewards: np.ndarray, base: float, path: Path, split: str = "support") -> Path:
    """Each member's mean reward against its noise scale, the mean per sigma, the base marked."""
    sigmas, rewards = np.asarray(sigmas, dtype=np.float64), np.asarray(rewards, dtype=np.float64)
    levels = sorted(set(sigmas.tolist()))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    position = {s: i for i, s in enumerate(levels)}  # sigmas as categories: equal spacing at any ratio
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(sigmas))
    x = np.array([position[s] for s in sigmas.tolist()]) + jitter
    ax.scatter(x, rewards, s=18, alpha=0.6, color="tab:blue", label="population member")
    means = [rewards[sigmas == s].mean() for s in levels]
    stds = [rewards[sigmas == s].std() for s in levels]
    ax.errorbar(range(len(levels)), means, yerr=stds, color="tab:orange", marker="o", markersize=7, linewidth=2,
                capsize=5, label="mean ± std per σ")  # fmt: skip
    ax.axhline(base, color="black", linestyle="--", linewidth=1.5, label=f"base model ({base:.3f})")
    ax.set_xticks(range(len(levels)), [f"{s:g}" for s in levels])
    ax.set_xlabel("noise scale σ of the member (coefficient units)")
    ax.set_ylabel(f"mean reward on the {split} split")
    ax.set_title(f"Reward vs noise scale: {len(rewards)} members of the first population")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def elite_weights(
    scores: np.ndarray, first_pass: np.ndarray, weights: np.ndarray, members: np.ndarray, title: str, path: Path
) -> Path:
    """The elite's merge weights (first pass: reward only; final: reward + compatibility), best member first."""
    order = np.lexsort((members, -np.asarray(scores)))
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(max(6, min(14, 0.25 * len(order) + 4)), 4.2))
    ax.bar(
        x, np.asarray(weights)[order], color="tab:green", alpha=0.75, label="final weight w₂ (reward + compatibility)"
    )
    ax.plot(x, np.asarray(first_pass)[order], "k.", markersize=8, label="first-pass weight w₁ (reward only)")
    ax.set_xlabel("elite member, ranked by score (best first)")
    ax.set_ylabel("weight in the merged direction (sums to 1)")
    if len(order) <= 30:
        ax.set_xticks(x, [str(int(m)) for m in np.asarray(members)[order]], fontsize=7, rotation=90)
        ax.set_xlabel("elite member index in the population, ranked by score (best first)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


def eigen_spectra(spectra: list[tuple[str, np.ndarray]], path: Path) -> Path:
    """Share of each principal direction in a cloud's variance, one line per cloud, log scale."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, shares in spectra:
        shares = np.asarray(shares, dtype=np.float64)
        keep = shares > 1e-12  # below that an eigenvalue is float rounding, not variance
        ax.plot(np.arange(1, len(shares) + 1)[keep], shares[keep], marker="o", markersize=4, label=label)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("principal direction (by decreasing eigenvalue)")
    ax.set_ylabel("share of the cloud's variance (eigenvalue / trace)")
    ax.set_title("Eigen-spectrum of the weighted elite cloud")
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


# outcome -> (marker, colour, legend label) of a candidate in the trajectory plot
_OUTCOMES = {
    "accepted": ("o", "tab:green", "candidate accepted (committed)"),
    "rejected": ("X", "tab:red", "candidate rejected on probe"),
    "gate": ("v", "tab:gray", "rejected at the gate (no probe evaluation)"),
}


def corp_trajectory(rounds: list[dict], base: float, final: float, path: Path) -> Path:
    """Probe accuracy round by round: the centre entering each round and the round's candidate,
    marked by outcome. ``rounds``: dicts with round, stage, centre (accuracy entering the round),
    candidate (accuracy or None) and outcome (a key of ``_OUTCOMES``)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    x = [r["round"] for r in rounds]
    centre = [np.nan if r["centre"] is None else r["centre"] for r in rounds]
    ax.plot(x, centre, color="tab:blue", marker="s", linewidth=2, drawstyle="steps-post",
            label="centre (committed model) entering the round")  # fmt: skip
    for outcome, (marker, colour, label) in _OUTCOMES.items():
        pts = [r for r in rounds if r["outcome"] == outcome]
        if pts:
            y = [r["candidate"] if r["candidate"] is not None else r["centre"] for r in pts]
            y = [np.nan if v is None else v for v in y]
            ax.scatter([r["round"] for r in pts], y, marker=marker, s=90, color=colour, zorder=3, label=label)
    ax.axhline(base, color="black", linestyle="--", linewidth=1.2, label=f"base model ({base:.3f})")
    ax.axhline(final, color="tab:red", linestyle=":", linewidth=1.5, label=f"final model ({final:.3f})")
    ax.set_xticks(x, [f"{r['round']}\n{r['stage']}" for r in rounds])
    ax.set_xlabel("round")
    ax.set_ylabel("probe accuracy (share of examples solved)")
    _clamp_to_share(ax)
    ax.set_title("CoRP trajectory: stage 1, then gated stage-2 rounds")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def vote_accuracy(ks: list[int], vote: list[float], members: list[float], base: float, path: Path) -> Path:
    """RandOpt: test accuracy of the top-K majority vote against K, each member's own accuracy."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(ks, vote, color="tab:purple", marker="o", linewidth=2, label="majority vote of the top K members")
    ax.scatter(np.arange(1, len(members) + 1), members, color="tab:gray", marker="x", s=40,
               label="member ranked K on its own")  # fmt: skip
    ax.axhline(base, color="black", linestyle="--", linewidth=1.2, label=f"base model ({base:.3f})")
    ax.set_xticks(sorted(set(ks) | set(range(1, len(members) + 1))))
    ax.set_xlabel("K: members voting (forward passes per test example)")
    ax.set_ylabel("test accuracy (share of examples solved)")
    _clamp_to_share(ax)
    ax.set_title("RandOpt: test accuracy vs ensemble size K")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def population_by_round(
    rounds: list[int], mean: list[float], std: list[float], low: list[float], high: list[float], path: Path
) -> Path:
    """Members' mean reward per round: mean ± std band, min and max."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    mean, std = np.asarray(mean), np.asarray(std)
    ax.plot(rounds, mean, color="tab:blue", marker="o", linewidth=2, label="population mean")
    ax.fill_between(rounds, mean - std, mean + std, color="tab:blue", alpha=0.2, label="± one std")
    ax.plot(rounds, low, color="tab:gray", linestyle=":", marker="v", label="worst member")
    ax.plot(rounds, high, color="tab:green", linestyle=":", marker="^", label="best member")
    ax.set_xticks(rounds)
    ax.set_xlabel("round")
    ax.set_ylabel("member mean reward on its round's split")
    ax.set_title("Population reward round by round")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def racing_survivors(races: list[tuple[int, list[dict[str, int]]]], path: Path) -> Path:
    """Members still decoded at each block of a raced population (corp/racing.py), one line per round."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for round_idx, stages in races:
        ends = [0] + [s["examples"] for s in stages]
        counts = [s["scored"] for s in stages]
        ax.step(ends, [counts[0], *counts], where="pre", marker="o", linewidth=2, label=f"round {round_idx}")
    ax.set_xlabel("examples decoded so far (blocks end at the markers)")
    ax.set_ylabel("members decoded on the block")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    ax.set_title("Racing: members decoded per block of examples")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)
