"""One registry mechanism for everything a user picks by name: tasks (``task=``), consolidation operators
(``consolidation=``) and loggers (``logger=``).

A class joins a registry with ``@REGISTRY.register("name")``, the only place its name is written in
Python. It carries ``config_class``, the dataclass of its config group (stored in Hydra's ConfigStore
as ``<group>_<name>_schema``), and builds itself from its config with the classmethod ``from_config``.
The registries themselves live next to their base classes (``corp.tasks.base.TASKS``,
``corp.consolidate.base.OPERATORS``, ``corp.observe.callbacks.LOGGERS``); each package's
``__init__`` imports its built-in members, so they are registered whenever the package is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Subclasses of ``base`` by name, in the order they were registered (reports list operators in it).

    A run uses one member of a group, chosen by ``<group>.name`` (``task.name``, ``consolidation.name``),
    or, with ``several``, any number at once, each config under its own name (``logger.wandb``).
    """

    def __init__(self, group: str, kind: str, base: type, several: bool = False) -> None:
        self.group, self.kind, self.base, self.several = group, kind, base, several
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def add(cls: type[T]) -> type[T]:
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            if not issubclass(cls, self.base):
                raise TypeError(f"{self.kind} {name!r}: {cls.__name__} is not a {self.base.__name__}")
            stated = name if self.several else getattr(cls.config_class, "name", None)  # <group>.name's default
            if stated != name:
                raise ValueError(f"{self.kind} {name!r}: {cls.config_class.__name__}.name defaults to {stated!r}")
            cls.name = name
            self._classes[name] = cls
            return cls

        return add

    def __getitem__(self, name: str) -> type[T]:
        """The class registered as ``name``; a ValueError naming the choice and what exists otherwise."""
        if name not in self._classes:
            choice = f"{self.group}.{name}" if self.several else f"{self.group}.name={name!r}"
            raise ValueError(f"{choice} is not a registered {self.kind}; "
                             f"allowed: {', '.join(sorted(self._classes))}")  # fmt: skip
        return self._classes[name]

    def get(self, name: str) -> type[T] | None:
        return self._classes.get(name)

    def build(self, name: str, cfg: Any) -> T:
        """The member ``name`` built from its config (see each base class's ``from_config``)."""
        return self[name].from_config(cfg)  # type: ignore[attr-defined]

    def schemas(self) -> dict[str, type]:
        """ConfigStore name -> config dataclass, for every member."""
        return {f"{self.group}_{name}_schema": cls.config_class for name, cls in self._classes.items()}  # type: ignore[attr-defined]

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def items(self) -> list[tuple[str, type[T]]]:
        return list(self._classes.items())
