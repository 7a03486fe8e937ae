"""The printed summary of a split-half analysis: one block per population, one table per space."""

from __future__ import annotations

from corp.analyze.split_half import PopulationResult, Settings, SpaceResult


def _space_block(res: SpaceResult) -> list[str]:
    lines = [f"{res.description} (dimension {res.dimension})", f"  null: {res.null}"]
    if res.ranks:
        lines.append("     k  overlap  null mean [5%, 95%]        z        p   p_corr   angle_k (deg)  null angle_k")
        for i, r in enumerate(res.ranks):
            lo, hi = res.null_band[i]
            z = f"{res.z[i]:8.2f}" if res.z[i] is not None else "       –"
            lines.append(
                f"  {r:4d}  {res.overlap[i]:7.3f}  {res.null_overlap[i]:9.3f} [{lo:.3f}, {hi:.3f}]  {z}  {res.p[i]:7.4f}  {res.p_corrected[i]:7.4f}"
                f"  {res.principal_angles_deg[i]:13.1f}  {res.null_principal_angles_deg[i]:12.1f}"
            )
    c = res.cloud
    if c is not None:
        lines.append(
            f"  elite cloud: effective rank {c.effective_rank:.2f} (null median {c.null_effective_rank:.2f} "
            f"[{c.null_effective_rank_band[0]:.2f}, {c.null_effective_rank_band[1]:.2f}], p {c.effective_rank_p:.3g}), "
            f"kappa {c.kappa:.3g} (null median {c.null_kappa:.3g} [{c.null_kappa_band[0]:.3g}, {c.null_kappa_band[1]:.3g}], "
            f"p {c.kappa_p:.3g})"
        )
    if res.note:
        lines.append(f"  ({res.note})")
    lines.append(f"  verdict: {res.verdict}")
    return lines


def summary(results: list[PopulationResult], settings: Settings) -> str:
    out: list[str] = []
    for pop in results:
        where = f"round {pop.round}" if pop.round is not None else "population"
        out += [
            f"== {pop.file}",
            f"{where}: {pop.members} members x {pop.examples} {pop.split} examples, mean reward {pop.mean_reward:.3f}"
            + (f" (complete rows only: {pop.partial} raced-out members left out)" if pop.partial else ""),
            f"elite: top {pop.elite_size} by mean reward (quantile {settings.quantile}), halves of {pop.half_size}; "
            f"{settings.splits} splits; null: {settings.null_draws} draws x {settings.null_splits} splits; "
            "weights proportional to reward rank",
            "overlap = ||U_A^T U_B||^2 / k of the halves' top-k subspaces (1: same, ~k/dim: unrelated); "
            "angle_k = k-th principal angle between the halves' top-rank subspaces; p = one-sided vs null, p_corr = corrected over ranks",
        ]
        for res in pop.spaces:
            out += ["", *_space_block(res)]
        out.append("")
    return "\n".join(out).rstrip()
