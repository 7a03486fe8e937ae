"""Debug aids: the composed config printed as a tree when a run starts (``print_config=true``) and a
``torch.profiler`` trace of one population member's scoring (``profile=true``, set by ``debug=profiler``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

PROFILE_DIR = "profiler"


def config_tree(config: dict[str, Any]) -> str:
    """The config as an indented tree: groups first line, their keys below."""
    lines = ["config"]

    def walk(node: Any, depth: int) -> None:
        for key, value in node.items():
            pad = "│   " * depth + "├── "
            if isinstance(value, dict) and value:
                lines.append(f"{pad}{key}")
                walk(value, depth + 1)
            else:
                lines.append(f"{pad}{key}: {value!r}")

    walk(config, 0)
    return "\n".join(lines)


class MemberProfile:
    """Profiles the first member scored under it, once per run: the Chrome trace and the table of the
    operators' time go to ``<out>/profiler/``."""

    def __init__(self, out: Path | None) -> None:
        self.folder = None if out is None else out / PROFILE_DIR  # None: nothing to profile

    @contextlib.contextmanager
    def member(self) -> Iterator[None]:
        if self.folder is None:
            yield
            return
        folder, self.folder = self.folder, None  # one member only
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
            yield
        folder.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(folder / "member_trace.json"))
        (folder / "member_ops.txt").write_text(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
