"""Consolidation operators, registered by name (``consolidation.name``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from corp.consolidate.base import Operator
from corp.consolidate.corp import CorpConfig, CorpOperator


def _corp(cfg: Any) -> Operator:
    p = cfg.perturbation
    return CorpOperator(cfg.consolidation, p.population_size, list(p.sigmas), cfg.seed, cfg.task.support_size)


# name -> (config dataclass for Hydra's ConfigStore, factory taking the whole typed config)
OPERATORS: dict[str, tuple[type, Callable[[Any], Operator]]] = {
    "corp": (CorpConfig, _corp),
}


def build_operator(cfg: Any) -> Operator:
    name = cfg.consolidation.name
    if name not in OPERATORS:
        raise ValueError(f"consolidation.name={name!r}; allowed: {', '.join(sorted(OPERATORS))}")
    return OPERATORS[name][1](cfg)
