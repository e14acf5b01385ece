"""Checkpoints: safetensors weights whose metadata rebuilds the model from the file alone.

Never pickle: the architecture, its arguments, the dataset, the method and the params
travel as JSON strings in the safetensors header.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.errors import UserError
from ..core.io import load_tensors, save_tensors
from .registry import create

FORMAT = "otjr-checkpoint-1"


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
    return state, info


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model described in the checkpoint, load its weights, and put it in eval mode."""
    state, info = read_checkpoint(path)
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
