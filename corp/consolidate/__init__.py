"""Consolidation operators, registered by name (``consolidation.name``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corp.consolidate.base import Operator
from corp.consolidate.corp import CorpConfig, CorpOperator
from corp.consolidate.es import ESConfig, ESOperator
from corp.consolidate.randopt import RandOptConfig, RandOptOperator
from corp.consolidate.soup import SoupConfig, SoupOperator


@dataclass(frozen=True)
class Registered:
    """An operator as the rest of corp finds it by name."""

    config: type  # dataclass of its ``consolidation.*`` group, stored in Hydra's ConfigStore
    build: Callable[[Any], Operator]  # the operator from the whole typed config
    operator: type[Operator]  # its display name and report rows (``Operator.report_rows``)


def _corp(cfg: Any) -> Operator:
    p = cfg.perturbation
    return CorpOperator(cfg.consolidation, p.population_size, list(p.sigmas), cfg.seed, cfg.task.support_size,
                        p.antithetic)  # fmt: skip


def _randopt(cfg: Any) -> Operator:
    p = cfg.perturbation
    return RandOptOperator(cfg.consolidation, p.population_size, list(p.sigmas), cfg.seed, p.antithetic)


def _soup(cfg: Any) -> Operator:
    p = cfg.perturbation
    return SoupOperator(cfg.consolidation, p.population_size, list(p.sigmas), cfg.seed, p.antithetic)


def _es(cfg: Any) -> Operator:
    return ESOperator(cfg.consolidation, cfg.perturbation.population_size, cfg.seed, cfg.perturbation.antithetic)


# Reports list methods in this order: the baselines first, CoRP last.
OPERATORS: dict[str, Registered] = {
    "randopt": Registered(RandOptConfig, _randopt, RandOptOperator),
    "es": Registered(ESConfig, _es, ESOperator),
    "soup": Registered(SoupConfig, _soup, SoupOperator),
    "corp": Registered(CorpConfig, _corp, CorpOperator),
}


def build_operator(cfg: Any) -> Operator:
    name = cfg.consolidation.name
    if name not in OPERATORS:
        raise ValueError(f"consolidation.name={name!r}; allowed: {', '.join(sorted(OPERATORS))}")
    return OPERATORS[name].build(cfg)
