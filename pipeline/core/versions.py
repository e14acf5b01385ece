"""Library versions recorded next to every number the pipeline produces."""

from __future__ import annotations

import platform
from importlib import metadata

_PACKAGES = ("otjr-pipeline", "torch", "torchvision", "torchattacks", "numpy", "safetensors", "dvc")


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
