"""Consolidation operators, registered by name (``consolidation.name``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from corp.consolidate.base import Operator
from corp.consolidate.corp import CorpConfig, CorpOperator
from corp.consolidate.es import ESConfig, ESOperator
from corp.consolidate.randopt import RandOptConfig, RandOptOperator
from corp.consolidate.soup import SoupConfig, SoupOperator


def _corp(cfg: Any) -> Operator:
    p = cfg.perturbation
    return CorpOperator(cfg.consolidation, p.population_size, list(p.sigmas), cfg.seed, cfg.task.support_size)


def _randopt(cfg: Any) -> Operator:
    p = cfg.perturbation
    return RandOptOperator(cfg.consolidation, p.population_size, list(p.sigmas), cfg.seed)


def _soup(cfg: Any) -> Operator:
    p = cfg.perturbation
    return SoupOperator(cfg.consolidation, p.population_size, list(p.sigmas), cfg.seed)


def _es(cfg: Any) -> Operator:
    return ESOperator(cfg.consolidation, cfg.perturbation.population_size, cfg.seed)


# name -> (config dataclass for Hydra's ConfigStore, factory taking the whole typed config)
OPERATORS: dict[str, tuple[type, Callable[[Any], Operator]]] = {
    "corp": (CorpConfig, _corp),
    "randopt": (RandOptConfig, _randopt),
    "soup": (SoupConfig, _soup),
    "es": (ESConfig, _es),
}


def build_operator(cfg: Any) -> Operator:
    name = cfg.consolidation.name
    if name not in OPERATORS:
        raise ValueError(f"consolidation.name={name!r}; allowed: {', '.join(sorted(OPERATORS))}")
    return OPERATORS[name][1](cfg)
