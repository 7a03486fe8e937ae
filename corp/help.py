"""The groups ``python train.py --help`` lists: every group under conf/ with its options, less Hydra's
own and the internal ones that no user picks (``debug/consolidation`` holds each operator's part of a
``debug=...`` setting, chosen by the defaults list)."""

from __future__ import annotations

from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "conf"
INTERNAL = ("hydra", "debug/consolidation")


def config_groups(conf: Path = CONF) -> str:
    """``group: option, option`` lines, as Hydra's ``$APP_CONFIG_GROUPS`` writes them."""
    lines = []
    for folder in sorted(p for p in conf.rglob("*") if p.is_dir()):
        group = folder.relative_to(conf).as_posix()
        options = sorted(f.stem for f in folder.glob("*.yaml"))
        if options and not any(group == g or group.startswith(g + "/") for g in INTERNAL):
            lines.append(f"{group}: {', '.join(options)}")
    return "\n".join(lines)
