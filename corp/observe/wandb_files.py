"""What W&B has written for a run, read back from its own files (``wandb/*run-*-<id>/run-<id>.wandb``,
the files ``wandb sync`` uploads), so that a resumed run logs each point and each round's values
exactly once: what an earlier attempt's W&B wrote is not logged again, and what it had not written
yet when the attempt was killed is logged by the next one.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_BLOCK = 32768  # a LevelDB log: 32 KiB blocks of chunks, each ``crc32, length, type`` + payload
_FULL, _LAST = 1, 4


def records(path: Path) -> Iterator:
    """The protobuf records of one ``.wandb`` file, up to the last complete one (a killed writer can
    leave half a record at the end)."""
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    data, pos, chunks = path.read_bytes(), 7, b""
    if data[:4] != b":W&B":
        return
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:  # block trailer padding
            pos += left
            continue
        if pos + 7 + length > len(data):
            return
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            try:
                record.ParseFromString(chunks)
            except DecodeError:
                return
            chunks = b""
            yield record


def history_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """``(_step, {key: value})`` of each history row of one ``.wandb`` file (values JSON-decoded)."""
    for record in records(path):
        if record.WhichOneof("record_type") != "history":
            continue
        row: dict = {}
        for item in record.history.item:
            *parents, leaf = [item.key] if item.key else list(item.nested_key)  # media: one item per field
            node = row
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = json.loads(item.value_json)
        yield record.history.step.num, row


@dataclass
class Logged:
    """What earlier attempts of a run got into W&B: the points, each round's keys, the last step."""

    points: set[int] = field(default_factory=set)
    round_keys: set[tuple[int, str]] = field(default_factory=set)
    last_step: int = -1

    def new_part(self, row: dict) -> dict:
        """The part of ``row`` W&B does not hold yet: all of a point not logged, none of one that was;
        of a round's row, the keys not logged for that round (its axis kept with them)."""
        if "point" in row:
            return {} if row["point"] in self.points else row
        new = {k: v for k, v in row.items() if k != "round" and (row["round"], k) not in self.round_keys}
        return {"round": row["round"], **new} if new else {}


def logged_before(wandb_dir: Path, run_id: str) -> Logged:
    """The points, round keys and last ``_step`` of every segment of run ``run_id`` under ``wandb_dir``."""
    logged = Logged()
    paths = sorted(wandb_dir.glob(f"*run-*-{run_id}/run-{run_id}.wandb"))
    _settle(paths)
    for path in paths:
        for step, row in history_rows(path):
            logged.last_step = max(logged.last_step, step)
            if "point" in row:
                logged.points.add(int(row["point"]))
            elif "round" in row:
                logged.round_keys.update((int(row["round"]), k) for k in row if not k.startswith("_"))
    return logged


def _settle(paths: list[Path], quiet_s: float = 1.0, limit_s: float = 30.0) -> None:
    """Wait until no file grows for ``quiet_s``: W&B's service outlives a process killed with -9 and
    may still be flushing the killed attempt's segment, which would otherwise be read half-written and
    then completed behind our back (its rows logged twice)."""

    def sizes() -> list[int]:
        return [p.stat().st_size if p.exists() else -1 for p in paths]

    start = last_change = time.monotonic()
    seen = sizes()
    while time.monotonic() - last_change < quiet_s and time.monotonic() - start < limit_s:
        time.sleep(0.1)
        now = sizes()
        if now != seen:
            seen, last_change = now, time.monotonic()
