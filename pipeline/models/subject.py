"""A model to evaluate and where it came from: what the attack, sanity and analysis stages take.

Its own module below the attacks, so that a stage loading models (analyze) does not import the attacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core import paths
from ..core.errors import UserError
from ..data import load_meta, load_split
from .checkpoint import load_checkpoint


def load_for_dataset(dataset: str, run: str) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """The run's checkpoint and the dataset's metadata; a model for another task is an error."""
    path = paths.checkpoint(dataset, run)
    meta = load_meta(dataset)
    model = load_checkpoint(path)
    check_task(path, model.checkpoint_info, dataset, meta)
    return model, model.checkpoint_info, meta


def check_task(path: Path | str, info: dict[str, Any], dataset: str, meta: dict[str, Any]) -> None:
    """A checkpoint for another class count or trained on another dataset is an error."""
    if info["model"]["num_classes"] != meta["num_classes"]:
        raise UserError(
            f"{path}: model has {info['model']['num_classes']} classes but dataset {dataset} has {meta['num_classes']}"
        )
    if info.get("dataset") not in (None, dataset):
        raise UserError(f"{path}: checkpoint was trained on {info['dataset']!r}, not {dataset!r}")


@dataclass
class Subject:
    """A model to evaluate and where it came from: one of the pipeline's runs or a model from elsewhere.

    The attack, sanity and analysis stages take a `Subject`, so a pipeline run and an external
    checkpoint go through the same evaluation code and produce the same records.
    """

    dataset: str
    run: str  # the name its records are written under
    model: nn.Module
    info: dict[str, Any]  # checkpoint metadata: settings, history, ... (empty for foreign weights)
    meta: dict[str, Any]  # the dataset's metadata
    checkpoint: str  # where the weights came from, as written into the record
    origin: dict[str, Any] | None = None  # for a model from elsewhere: format, architecture, source


def pipeline_subject(dataset: str, run: str) -> Subject:
    """One of the pipeline's own runs, read from its checkpoint."""
    model, info, meta = load_for_dataset(dataset, run)
    checkpoint = str(paths.checkpoint(dataset, run).relative_to(paths.root()))
    return Subject(dataset, run, model, info, meta, checkpoint)


def test_subset(dataset: str, n: int, device: torch.device, split: str = "test"
                ) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The first n images of `split` (test, or val: the held-out part of the training split), with their
    description."""
    x, y = load_split(dataset, split)
    return x[:n].to(device), y[:n].to(device), f"first {min(n, len(y))} images of the {dataset} {split} split"
