"""``python -m corp.report <sweep or run folder> [--out DIR]``: markdown table + PNG chart."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from corp.report.sweep import report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m corp.report", description=__doc__)
    ap.add_argument("folder", type=Path, help="a multirun sweep folder (or any folder of runs)")
    ap.add_argument("--out", type=Path, default=None, help="where report.md and report.png go (default: folder)")
    args = ap.parse_args(argv)
    if not args.folder.is_dir():
        print(f"error: {args.folder}: no such folder", file=sys.stderr)
        return 2
    try:
        print(report(args.folder, args.out))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
