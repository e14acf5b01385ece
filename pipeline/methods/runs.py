"""What one training stage trains: a method, optionally with one add-on it combines with ('trades-awp').

Its own module because it reads both registries (`METHODS`, `ADDONS`), which sit below it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.errors import UserError
from .addons import ADDONS
from .base import METHODS


@dataclass(frozen=True)
class Run:
    """What one training stage trains: a method, optionally with an add-on ('trades-awp')."""

    method: str
    addons: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return "-".join((self.method, *self.addons))


def parse_run(name: str, key: str = "method") -> Run:
    """'otjr' -> Run('otjr'); 'trades-awp' -> Run('trades', ('awp',)).

    Unknown parts, more than one add-on, or an add-on the method does not combine with
    are errors naming `key`. Imports no method or add-on module but, for a run with an add-on, the method's.
    """
    if not isinstance(name, str) or not name:
        raise UserError(f"{key}: expected a method name, got {name!r}")
    method, *addons = name.split("-")
    if method not in METHODS:
        METHODS.get(method, key=key)  # the error naming the registered methods
    for addon in addons:
        if addon not in ADDONS:
            ADDONS.get(addon, key=key)
        if addon not in METHODS.get(method).addons:  # imports the method's module, not the add-on's
            allowed = ", ".join(sorted(m for m in METHODS.names() if addon in METHODS.get(m).addons)) or "none"
            raise UserError(f"{key}: add-on '{addon}' does not combine with method '{method}' in {name!r}; "
                            f"it combines with: {allowed}")
    if len(addons) > 1:
        raise UserError(f"{key}: at most one add-on per run, got {name!r}")
    return Run(method, tuple(addons))
