"""``python -m corp.analyze <population .npz or run folder>``: split-half low-rank analysis.

Splits the rewarded elite into random halves many times, compares the halves' reward-weighted
principal subspaces (overlap for ranks 1..r) against unrewarded halves, in seed space and in
the behaviour space of per-example rewards; prints a summary, writes analysis.json and analysis.png.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from corp.analyze import PopulationError, Settings, analyse_path
from corp.analyze.plot import analysis_png
from corp.analyze.summary import summary


def default_out(path: Path) -> Path:
    """The run folder the input belongs to (or the file's folder)."""
    folder = path if path.is_dir() else path.parent
    return folder.parent if folder.name == "populations" else folder


def _finite(data):
    """JSON has no inf/nan (kappa of a cloud without spread is infinite): write them as null."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_finite(v) for v in data]
    return data


def main(argv: list[str] | None = None) -> int:
    d = Settings()
    ap = argparse.ArgumentParser(prog="python -m corp.analyze", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("path", type=Path, help="a populations/round_XXX.npz file, or a run folder (all its rounds)")
    ap.add_argument("--round", type=int, default=None, help="analyse only this round of a run folder")
    ap.add_argument("--quantile", type=float, default=d.quantile, help="elite: members above this reward quantile")
    ap.add_argument("--rank", type=int, default=d.rank, help="test ranks 1..RANK (capped by half size, dimension)")
    ap.add_argument("--splits", type=int, default=d.splits, help="random splits of the rewarded elite")
    ap.add_argument("--null", type=int, default=d.null_draws, help="unrewarded copies of the population (null)")
    ap.add_argument("--null-splits", type=int, default=d.null_splits, help="splits per unrewarded copy")
    ap.add_argument("--alpha", type=float, default=d.alpha, help="level of each space's verdict")
    ap.add_argument("--seed", type=int, default=d.seed, help="seed of the splits and the null")
    ap.add_argument("--out", type=Path, default=None, help="folder for analysis.json/.png (default: the run folder)")
    args = ap.parse_args(argv)
    settings = Settings(args.quantile, args.rank, args.splits, args.null, args.null_splits,
                        args.alpha, args.seed)  # fmt: skip
    try:
        results = analyse_path(args.path, settings, args.round)
    except (PopulationError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or default_out(args.path)
    out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "-m", "corp.analyze", *(sys.argv[1:] if argv is None else argv)])
    report = {"command": command, "input": str(args.path), "settings": asdict(settings),
              "populations": [asdict(r) for r in results]}  # fmt: skip
    (out / "analysis.json").write_text(json.dumps(_finite(report), indent=1, allow_nan=False) + "\n")
    title = f"Split-half low-rank analysis (* = detected rank): {args.path.resolve().name}"
    png = analysis_png(results, title, out / "analysis.png")
    print(summary(results, settings))
    print(f"\ncommand: {command}\nwrote {out / 'analysis.json'} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
