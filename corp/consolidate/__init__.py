"""Consolidation operators, registered by name (``consolidation.name``) in ``OPERATORS``.

Importing this package registers the built-in operators. The order of the imports below is the
registry's order, which reports list methods in: the baselines first, CoRP last.
"""

# isort: off
from corp.consolidate import randopt, es, soup, corp  # noqa: F401  (registration, in report order)

# isort: on
from corp.consolidate.base import OPERATORS, Operator


def build_operator(cfg) -> Operator:
    """The operator ``consolidation.name`` names, built from the whole typed config."""
    return OPERATORS.build(cfg.consolidation.name, cfg)
