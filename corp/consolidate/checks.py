"""Value checks shared by the operators' configs; every message names its ``consolidation.*`` key."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def fail(key: str, value: Any, why: str) -> None:
    raise ValueError(f"consolidation.{key}={value}: {why}")


def choice(key: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        fail(key, value, f"must be one of {list(options)}")


def at_least(key: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        fail(key, value, f"must be an integer >= {low}")


def positive(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        fail(key, value, "must be a finite number > 0")
    return float(value)


def positive_list(key: str, values: Any) -> list[float]:
    """A non-empty list of finite numbers > 0, as floats."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or not len(values):
        fail(key, values, "must be a non-empty list of numbers > 0")
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        fail(key, values, "must be a non-empty list of numbers > 0")
    if not all(math.isfinite(v) and v > 0 for v in out):
        fail(key, values, "every value must be a finite number > 0")
    return out
