"""What one training stage trains: a method, optionally with one add-on it combines with ('trades-awp'),
or a variant: a method under a name of its own with some of its settings changed (params.yaml `variants`).

Its own module because it reads both registries (`METHODS`, `ADDONS`), which sit below it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from ..core.errors import UserError
from .addons import ADDONS
from .base import METHODS


@dataclass(frozen=True)
class Run:
    """What one training stage trains: a method, optionally with an add-on ('trades-awp'), or a variant of a
    method ('otjr_tuned': method otjr, the settings params.yaml's `variants.otjr_tuned` changes)."""

    method: str
    addons: tuple[str, ...] = field(default=())
    variant: str | None = None

    @property
    def name(self) -> str:
        return self.variant or "-".join((self.method, *self.addons))


#: A variant's name: lower case, digits and underscores, so it reads as one word in stage names and tables.
VARIANT_NAME = re.compile(r"[a-z][a-z0-9_]*")


def parse_run(name: str, key: str = "method", variants: Mapping[str, str] | None = None) -> Run:
    """'otjr' -> Run('otjr'); 'trades-awp' -> Run('trades', ('awp',)); a name in `variants` (variant ->
    method) -> Run(method, variant=name).

    Unknown parts, more than one add-on, or an add-on the method does not combine with
    are errors naming `key`. Imports no method or add-on module but, for a run with an add-on, the method's.
    """
    if not isinstance(name, str) or not name:
        raise UserError(f"{key}: expected a method name, got {name!r}")
    if variants and name in variants:
        return Run(variants[name], variant=name)
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


def variants_from(block: object, where: str = "variants") -> dict[str, str]:
    """params.yaml's `variants` block as {variant: method}; a bad name or method is an error naming the key.

    Each entry names its `method` (a registered method, no add-on) and the settings it changes; the
    settings themselves are validated with the method's own (pipeline/config.py)."""
    if block is None:
        return {}
    if not isinstance(block, dict):
        raise UserError(f"'{where}': expected a mapping of run names to {{method: ..., <settings>}}")
    taken = set(METHODS.names()) | set(ADDONS.names())
    out = {}
    for name, entry in block.items():
        if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
            raise UserError(f"'{where}': run name {name!r} must be lower case letters, digits and underscores")
        if name in taken:
            raise UserError(f"'{where}.{name}': a method or add-on is already called {name!r}; pick another name")
        if not isinstance(entry, dict) or "method" not in entry:
            raise UserError(f"'{where}.{name}': missing key 'method' (the method whose settings it changes)")
        if entry["method"] not in METHODS:  # `in`: the registered names, no import
            METHODS.get(entry["method"], key=f"'{where}.{name}.method'")  # the error naming the methods
        out[name] = entry["method"]
    return out
