"""Checkpoints: safetensors weights whose metadata rebuilds the model from the file alone.

Never pickle: the architecture, its arguments, the dataset, the method and the params
travel as JSON strings in the safetensors header.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import nn

from ..core.errors import UserError
from ..core.io import load_tensors, save_tensors
from ..core.schema import first_error
from .registry import create

FORMAT = "otjr-checkpoint-1"


MAX_DEPTH = 16  # nesting of the metadata's JSON; ours is at most 5 deep


class _Spec(BaseModel):
    """The model description a checkpoint must carry: typed, finite, one mean/std per input channel."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)
    name: str
    args: dict[str, int | float | str | bool]
    num_classes: int = Field(ge=1)
    in_channels: int = Field(ge=1)
    mean: list[float]
    std: list[Annotated[float, Field(gt=0)]]

    @model_validator(mode="after")
    def _per_channel(self) -> "_Spec":
        if not len(self.mean) == len(self.std) == self.in_channels:
            raise ValueError(f"mean and std need one value per input channel ({self.in_channels})")
        return self


def _depth(value: Any) -> int:
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return 1 + max((_depth(c) for c in children), default=0)


def check_metadata(path: Path, info: dict[str, Any]) -> None:
    """Raise `UserError` naming `path` and the key if the checkpoint's metadata is not what `build` needs."""
    if _depth(info) > MAX_DEPTH:
        raise UserError(f"{path}: checkpoint metadata is nested more than {MAX_DEPTH} levels deep")
    try:
        _Spec.model_validate(info["model"])
    except ValidationError as err:
        raise UserError(f"{path}: checkpoint metadata {first_error(err, 'model')}") from None
    for key in ("dataset", "run"):
        if key in info and not isinstance(info[key], str):
            raise UserError(f"{path}: checkpoint metadata '{key}' must be a string (got {info[key]!r})")


def model_spec(name: str, args: dict, num_classes: int, in_channels: int, mean, std) -> dict[str, Any]:
    """Everything `create` needs, as plain JSON-able data."""
    return {
        "name": name,
        "args": dict(args),
        "num_classes": num_classes,
        "in_channels": in_channels,
        "mean": list(mean),
        "std": list(std),
    }


def build(spec: dict[str, Any]) -> nn.Module:
    return create(
        spec["name"],
        num_classes=spec["num_classes"],
        in_channels=spec["in_channels"],
        mean=spec["mean"],
        std=spec["std"],
        **spec["args"],
    )


def save_checkpoint(path: Path, model: nn.Module, spec: dict[str, Any], info: dict[str, Any]) -> None:
    """Write weights + metadata atomically. `info` (dataset, run, params, ...) must be JSON-able."""
    save_tensors(path, dict(model.state_dict()), {"format": FORMAT, "model": spec, **info})


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, info) of a checkpoint; missing, corrupt or foreign files give one clear line."""
    state, metadata = load_tensors(path, what="checkpoint")
    if metadata.get("format") != FORMAT:
        raise UserError(f"{path}: not a checkpoint of this pipeline (no '{FORMAT}' metadata)")
    info = {k: v for k, v in metadata.items() if k != "format"}
    if not isinstance(info.get("model"), dict):
        raise UserError(f"{path}: checkpoint metadata lacks the model description")
    check_metadata(path, info)
    return state, info


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model described in the checkpoint, load its weights, and put it in eval mode."""
    state, info = read_checkpoint(path)
    for name, tensor in state.items():  # before any work: a diverged training's weights fail every attack
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = "NaN" if bool(torch.isnan(tensor).any()) else "infinite"
            raise UserError(f"{path}: weights not finite: tensor '{name}' holds {bad} values; the checkpoint is "
                            "unusable (retrain the run)")
    try:
        model = build(info["model"])
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{path}: weights do not match the architecture in its metadata ({first})") from None
    model.checkpoint_info = info
    return model.to(device).eval()


def checkpoint_info(path: Path) -> dict[str, Any]:
    return read_checkpoint(path)[1]
