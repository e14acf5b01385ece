"""Presets: the default and the paper's experiments as params files, written to params.yaml in one command.

`presets/default.yaml` holds every setting: it is params.yaml as shipped (`otjr preset default`
writes it back). Every other file states only what differs from the file it `extends`:
`presets/paper.yaml` what the paper's experiments share, `presets/<name>.yaml` what one
experiment sets. A file with a `description` is a preset. Mappings merge key by key (an empty
mapping clears the base's), anything else replaces. The merged result keeps the base file's
comments, is validated like any params.yaml, and only then written.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from .core import paths
from .core.errors import UserError
from .core.io import read_text

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"
_META = ("description", "extends")


def _yaml():
    yaml = YAML()  # round-trip: keeps the comments of the base file
    yaml.width = 120
    return yaml


def _load(path: Path) -> Any:
    try:
        return _yaml().load(read_text(path, what="preset"))
    except (OSError, YAMLError) as err:
        raise UserError(f"{path}: cannot be read as YAML ({err})") from None


def names() -> list[str]:
    """Presets available (files with a description; the paper's shared settings are not one)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml") if "description" in (_load(p) or {}))


def describe(name: str) -> str:
    return str(_load(_path(name)).get("description", ""))


def _path(name: str) -> Path:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file() or name not in names():
        raise UserError(f"preset: unknown preset {name!r}; choose from: {', '.join(names())}")
    return path


def _merge(base: Any, overlay: Any) -> Any:
    """Overlay mappings key by key (its comments replace the base's on the keys it sets); an empty mapping
    replaces (model.args: {} drops the base model's arguments)."""
    if isinstance(base, dict) and isinstance(overlay, dict) and overlay:
        for key, value in overlay.items():
            base[key] = _merge(base[key], value) if key in base else value
            comment = getattr(overlay, "ca", None) and overlay.ca.items.get(key)
            if comment and hasattr(base, "ca"):
                base.ca.items[key] = comment
        return base
    return overlay


def resolve(name: str) -> Any:
    """The preset's full params (a ruamel mapping, comments of the base kept)."""
    path = _path(name)
    overlay = _load(path)
    chain = [overlay]
    seen = {path}
    while "extends" in chain[-1]:
        parent = PRESET_DIR / str(chain[-1]["extends"])
        if parent in seen or not parent.is_file():
            raise UserError(f"{path}: 'extends: {chain[-1]['extends']}' is missing or circular")
        seen.add(parent)
        chain.append(_load(parent))
    merged = chain.pop()
    while chain:
        layer = chain.pop()
        merged = _merge(merged, {k: v for k, v in layer.items() if k not in _META})
    for key in _META:
        merged.pop(key, None)
    return merged


def render(name: str) -> str:
    out = io.StringIO()
    _yaml().dump(resolve(name), out)
    header = (f"# Written by `python -m pipeline preset {name}` from presets/{name}.yaml "
              f"({describe(name)}).\n# Edit freely; run the command again to start over.\n")
    return header + out.getvalue()


def validate(text: str) -> None:
    """Raise `UserError` if `text` is not a valid params.yaml."""
    from .config import load_params  # imports torch (the attack registry): `otjr preset --list` does not need it

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(text)
        load_params(path)


def apply(name: str, target: Path | None = None) -> Path:
    """Write preset `name`, validated, to params.yaml (or `target`)."""
    text = render(name)
    try:
        validate(text)
    except UserError as err:
        raise UserError(f"preset {name}: {err}") from None
    target = Path(target) if target else paths.params_file()
    target.write_text(text)  # a file users edit: plain write, usual permissions
    return target
