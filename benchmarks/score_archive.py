"""The saved scores of a committed sweep, kept in git as one archive instead of a thousand small files.

A sweep folder's score caches (``populations/``, ``evals/``) and round checkpoints (``checkpoints/``)
are what ``population.load=<sweep folder>`` and resuming read; no person reads them. ``pack`` stores
them as ``scores.tar.xz`` next to a ``scores.sha256`` listing every member, ``unpack`` puts them back
in place byte for byte (checked against that list)::

    python benchmarks/score_archive.py pack benchmarks/results/compare/arithmetic
    python benchmarks/score_archive.py unpack                  # every sweep under benchmarks/results

``unpack`` is plain tar plus a check: ``tar -xf <sweep>/scores.tar.xz -C <sweep>`` and, inside the
sweep folder, ``sha256sum -c scores.sha256`` do the same.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tarfile
from pathlib import Path

ARCHIVE = "scores.tar.xz"
MANIFEST = "scores.sha256"
PACKED = ("populations", "evals", "checkpoints")  # run sub-folders that go into the archive
RESULTS = Path(__file__).resolve().parent / "results"


def packed_files(sweep: Path) -> list[Path]:
    """Every file of ``sweep``'s runs that belongs in the archive, sorted (relative to ``sweep``)."""
    files = [f for name in PACKED for f in sweep.glob(f"*/{name}/**/*") if f.is_file()]
    return sorted(f.relative_to(sweep) for f in files if not f.name.endswith(".tmp.npz"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pack(sweep: Path) -> tuple[int, int, int]:
    """Write ``scores.tar.xz`` and ``scores.sha256``; returns (members, loose bytes, archive bytes).

    The archive depends on the files' bytes and names only (no times, owners or modes), so packing
    the same files again gives the same archive and git sees no change."""
    files = packed_files(sweep)
    if not files:
        raise ValueError(f"{sweep}: no {', '.join(PACKED)} files below its run folders")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz", format=tarfile.GNU_FORMAT, preset=9) as tar:
        for rel in files:
            data = (sweep / rel).read_bytes()
            info = tarfile.TarInfo(rel.as_posix())
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    (sweep / ARCHIVE).write_bytes(buffer.getvalue())
    (sweep / MANIFEST).write_text("".join(f"{sha256(sweep / rel)}  {rel.as_posix()}\n" for rel in files))
    loose = sum((sweep / rel).stat().st_size for rel in files)
    return len(files), loose, len(buffer.getvalue())


def read_manifest(sweep: Path) -> dict[str, str]:
    lines = (sweep / MANIFEST).read_text().splitlines()
    return {name: digest for digest, name in (line.split("  ", 1) for line in lines if line)}


def unpack(sweep: Path) -> int:
    """Extract ``scores.tar.xz`` into ``sweep`` and check every file against ``scores.sha256``."""
    expected = read_manifest(sweep)
    with tarfile.open(sweep / ARCHIVE) as tar:
        names = tar.getnames()
        if sorted(names) != sorted(expected):
            raise ValueError(f"{sweep / ARCHIVE}: members differ from {MANIFEST}")
        tar.extractall(sweep, filter="data")  # "data": no absolute names, links or names leaving sweep
    bad = [name for name, digest in expected.items() if sha256(sweep / name) != digest]
    if bad:
        raise ValueError(f"{sweep}: {len(bad)} restored files differ from {MANIFEST}, e.g. {bad[0]}")
    return len(names)


def sweeps(folders: list[Path]) -> list[Path]:
    """The given sweep folders, or every one under benchmarks/results that holds an archive."""
    return folders or sorted(a.parent for a in RESULTS.rglob(ARCHIVE))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("pack", "unpack"))
    ap.add_argument("folders", nargs="*", type=Path, help="sweep folders (default: every archived sweep)")
    args = ap.parse_args(argv)
    try:
        for sweep in sweeps(args.folders):
            if args.command == "pack":
                members, loose, packed = pack(sweep)
                print(f"{sweep}: {members} files, {loose} bytes loose -> {packed} bytes in {ARCHIVE}")
            else:
                print(f"{sweep}: restored {unpack(sweep)} files, sha256 as in {MANIFEST}")
    except (OSError, ValueError, tarfile.TarError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
