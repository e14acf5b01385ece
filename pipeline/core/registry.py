"""A name -> object registry: one per concept (datasets, models, methods, attacks)."""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from .errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; unknown names raise one clear `UserError` listing what exists.

    With `package` and `modules`, entry `name` is registered by importing `<package>.<name>` the first
    time it is asked for, so a process imports only the entries it uses (and a stage's code
    dependencies are those entries' modules, not every module of the registry).
    """

    def __init__(self, kind: str, package: str | None = None, modules: Iterable[str] = ()):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy = {name: f"{package}.{name}" for name in modules}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering `obj` under `name`; a duplicate name is a programming error."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str, *, key: str | None = None) -> T:
        """The object registered as `name`; `key` names the param or option it came from."""
        if isinstance(name, str) and name in self._lazy and name not in self._items:
            importlib.import_module(self._lazy[name])
            if name not in self._items:
                raise ValueError(f"module {self._lazy[name]} registers no {self.kind} {name!r}")
        try:
            return self._items[name]
        except (KeyError, TypeError):
            where = f"{key}: " if key else ""
            raise UserError(
                f"{where}unknown {self.kind} {name!r}; choose from: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._lazy))

    def module(self, name: str) -> str:
        """The dotted module that defines entry `name` (imports nothing for an entry not yet loaded)."""
        return self._lazy[name] if name in self._lazy else self.get(name).__module__

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
