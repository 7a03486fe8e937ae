"""``python -m corp.report <sweep or run folder> [--by KEY[,KEY]] [--out DIR]``: markdown table + PNG chart.

Rows are methods and, by default, every config key swept within a method and task (one
column each); columns are tasks; cells are mean ± standard error of test accuracy over seeds,
with each run's own standard error over the test examples. ``--by``
picks the keys that split rows; runs differing only in other keys are pooled with the seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from corp.report.sweep import report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m corp.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("folder", type=Path, help="a multirun sweep folder (or any folder of runs)")
    ap.add_argument("--by", action="append", default=None, metavar="KEY[,KEY]",
                    help="config keys that split rows, e.g. consolidation.quantiles (repeatable; "
                         "default: every key swept within a method and task)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=None, help="where report.md and report.png go (default: folder)")
    args = ap.parse_args(argv)
    if not args.folder.is_dir():
        print(f"error: {args.folder}: no such folder", file=sys.stderr)
        return 2
    by = None if args.by is None else [k.strip() for arg in args.by for k in arg.split(",") if k.strip()]
    try:
        print(report(args.folder, args.out, by))
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
