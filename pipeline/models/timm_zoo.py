"""timm architectures as models: `model.name: timm/<architecture>` with `model.args` passed on.

timm is an optional extra (`pip install -e '.[timm]'`); without it such a name is one clear
error. The architecture is built for the dataset's classes and channels, untrained
(`pretrained` defaults to False), and wrapped like every registered model (normalisation inside).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..core.errors import UserError

PREFIX = "timm/"


def is_timm(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def import_timm(what: str = "model.name"):
    try:
        import timm  # an optional package, slow to import: only timm architectures need it
    except ImportError:
        raise UserError(f"{what}: timm architectures need the timm extra: pip install -e '.[timm]'") from None
    return timm


def timm_builder(name: str, key: str = "model.name") -> Callable[..., nn.Module]:
    """builder(num_classes, in_channels, **args) for `timm/<architecture>`; an unknown architecture is an error."""
    arch = name[len(PREFIX):]
    timm = import_timm(key)
    if not timm.is_model(arch):
        raise UserError(f"{key}: timm has no architecture {arch!r} (timm.list_models() lists them)")

    def build(num_classes: int, in_channels: int = 3, **args) -> nn.Module:
        args.setdefault("pretrained", False)
        return timm.create_model(arch, num_classes=num_classes, in_chans=in_channels, **args)

    return build
