"""A name -> object registry: one per concept (datasets, models, methods, attacks)."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from .errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; unknown names raise one clear `UserError` listing what exists."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

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
        try:
            return self._items[name]
        except (KeyError, TypeError):
            where = f"{key}: " if key else ""
            raise UserError(
                f"{where}unknown {self.kind} {name!r}; choose from: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
