"""Every plot of one run, drawn from its ``rounds.jsonl`` and ``results.json`` into ``plots/``.

    python -m corp.report.run_plots <run folder>     # (re)draw a finished run's plots

Which plots a run gets depends on what it recorded: any population gives the reward
distribution and reward vs sigma (and, over several rounds, reward per round); CoRP adds
the elite's weights, the elite cloud's eigen-spectrum and the stage-1/stage-2 trajectory;
RandOpt the vote accuracy against K; a raced population the members decoded per block.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from corp.consolidate.observations import CENTRE_PROBE_ACC, EliteRow, SpectrumRow, Stage1Keys, Stage2Keys
from corp.errors import disk_full
from corp.observe.rounds import PopulationEntry, read_rounds
from corp.report import plots

log = logging.getLogger(__name__)


def _population_plots(rounds: list[dict], results: dict, folder: Path) -> list[Path]:
    scored = [(r["round"], PopulationEntry.read(r["population"])) for r in rounds if r.get("population")]
    if not scored:
        return []
    first = scored[0][1]
    split, rewards, sigmas = first.split, np.asarray(first.mean_rewards), np.asarray(first.sigmas)
    base, final = results[split]["base_reward"], results[split]["final_reward"]
    out = [
        plots.population_rewards(rewards, sigmas, base, final, folder / "population_rewards.png", split=split),
        plots.reward_vs_sigma(sigmas, rewards, base, folder / "reward_vs_sigma.png", split=split),
    ]
    if len(scored) > 1:
        pops = [np.asarray(p.mean_rewards) for _, p in scored]
        out.append(
            plots.population_by_round(
                [i for i, _ in scored],
                [float(p.mean()) for p in pops],
                [float(p.std()) for p in pops],
                [float(p.min()) for p in pops],
                [float(p.max()) for p in pops],
                folder / "population_by_round.png",
            )
        )
    return out


def _elite_plot(rounds: list[dict], folder: Path) -> list[Path]:
    stage1 = next((r for r in rounds if Stage1Keys.ELITE_MEMBERS in r.get("details", {})), None)
    if stage1 is None:
        return []
    rows = [EliteRow.read(r) for r in stage1["details"][Stage1Keys.ELITE_MEMBERS]]
    m = stage1["metrics"]
    title = (
        f"Stage-1 elite weights: {len(rows)} members "
        f"(q={m[Stage1Keys.BEST_Q]:g}, β={m[Stage1Keys.BEST_BETA]:g}, ESS {m[Stage1Keys.ESS]:.1f})"
    )
    return [
        plots.elite_weights(
            np.array([r.score for r in rows]),
            np.array([r.first_pass_weight for r in rows]),
            np.array([r.weight for r in rows]),
            np.array([r.member for r in rows]),
            title,
            folder / "elite_weights.png",
        )
    ]


def _spectrum_plot(rounds: list[dict], folder: Path) -> list[Path]:
    spectra = []
    for r in rounds:
        for keys, what in ((Stage1Keys, "stage-1 elite"), (Stage2Keys, "stage-2 positive members")):
            rows = r.get("details", {}).get(keys.SPECTRUM)
            if rows:
                m = r["metrics"]
                stats = f"eff. rank {m.get(keys.EFF_RANK, float('nan')):.2f}, κ {m.get(keys.KAPPA, float('nan')):.3g}"
                shares = np.array([SpectrumRow.read(x).share for x in rows])
                spectra.append((f"round {r['round']}, {what} ({stats})", shares))
    return [plots.eigen_spectra(spectra, folder / "elite_spectrum.png")] if spectra else []


def trajectory_points(rounds: list[dict]) -> list[dict[str, Any]]:
    """Per CoRP round: the centre's probe accuracy entering it, the candidate's, and the outcome."""
    points: list[dict[str, Any]] = []
    centre = None
    for r in rounds:
        m = r["metrics"]
        if Stage1Keys.PROBE_ACC in m:
            outcome = "accepted" if m[Stage1Keys.COMMITTED] else "rejected"
            points.append({"round": r["round"], "stage": "stage 1", "centre": m[Stage1Keys.CENTRE_PROBE_ACC],
                           "candidate": m[Stage1Keys.PROBE_ACC], "outcome": outcome})  # fmt: skip
        elif Stage2Keys.GATED in m:
            if not m[Stage2Keys.GATED]:
                outcome, candidate = "gate", None
            else:
                outcome = "accepted" if m[Stage2Keys.ACCEPTED] else "rejected"
                candidate = m[Stage2Keys.PROBE_ACC]
            points.append({"round": r["round"], "stage": f"stage 2 #{int(m[Stage2Keys.ROUND]) + 1}", "centre": centre,
                           "candidate": candidate, "outcome": outcome})  # fmt: skip
        else:
            continue
        centre = m.get(CENTRE_PROBE_ACC, centre)
    return points


def _trajectory_plot(rounds: list[dict], results: dict, folder: Path) -> list[Path]:
    points = trajectory_points(rounds)
    if not points:
        return []
    probe = results["probe"]
    return [plots.corp_trajectory(points, probe["base"], probe["final"], folder / "stage2_trajectory.png")]


def _racing_plot(rounds: list[dict], folder: Path) -> list[Path]:
    races = [(r["round"], r["details"]["racing/stages"]) for r in rounds if "racing/stages" in r.get("details", {})]
    return [plots.racing_survivors(races, folder / "racing_survivors.png")] if races else []


def _vote_plot(results: dict, folder: Path) -> list[Path]:
    vote = results.get("vote")
    if not vote:
        return []
    ks = sorted(int(k) for k in vote["accuracy"])
    return [
        plots.vote_accuracy(
            ks,
            [vote["accuracy"][str(k)] for k in ks],
            vote["member_accuracy"],
            results["test"]["base"],
            folder / "randopt_vote_accuracy.png",
        )
    ]


def draw_run_plots(run_dir: Path, results: dict | None = None) -> list[Path]:
    """Draw every plot that applies to the run in ``run_dir``; returns the files written.

    A plot that fails is logged and skipped: it must not cost the run its other outputs."""
    run_dir = Path(run_dir)
    if results is None:
        results = json.loads((run_dir / "results.json").read_text())
    rounds = read_rounds(run_dir / "rounds.jsonl")
    folder = run_dir / "plots"
    makers: list[Callable[[], list[Path]]] = [
        lambda: _population_plots(rounds, results, folder),
        lambda: _elite_plot(rounds, folder),
        lambda: _spectrum_plot(rounds, folder),
        lambda: _trajectory_plot(rounds, results, folder),
        lambda: _vote_plot(results, folder),
        lambda: _racing_plot(rounds, folder),
    ]
    written: list[Path] = []
    for make in makers:
        try:
            written += make()
        except Exception as err:  # noqa: BLE001 - a plot must not cost a finished run its other outputs
            if disk_full(err):  # but a full disk stops the run: its other outputs cannot be written either
                raise
            log.exception("a plot of %s could not be drawn", run_dir)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "results.json").exists():
        sys.exit("usage: python -m corp.report.run_plots <run folder holding results.json>")
    for path in draw_run_plots(Path(sys.argv[1])):
        print(path)
