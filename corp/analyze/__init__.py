"""Split-half low-rank analysis of saved populations: ``python -m corp.analyze <population or run dir>``."""

from __future__ import annotations

from pathlib import Path

from corp.analyze.population import PopulationError, SavedPopulation, load_population, population_files
from corp.analyze.split_half import PopulationResult, Settings, analyse

__all__ = [
    "SavedPopulation",
    "PopulationError",
    "PopulationResult",
    "Settings",
    "analyse",
    "analyse_path",
    "load_population",
    "population_files",
]


def analyse_path(path: Path, settings: Settings, round_: int | None = None) -> list[PopulationResult]:
    """Analyse a population file, or every round (or round ``round_``) of a run folder."""
    settings.validate()
    return [analyse(load_population(f), settings) for f in population_files(Path(path), round_)]
