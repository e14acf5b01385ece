"""The attack stage: evaluate one checkpoint under the configured suite and write its record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core import paths
from ..core.device import resolve_device
from ..core.errors import UserError
from ..core.io import save_tensors, write_json
from ..core.progress import progress
from ..core.versions import library_versions
from ..data import load_meta, load_split
from ..models import load_checkpoint
from ..params import Params
from .base import ATTACKS, Attack
from .evaluate import evaluate, summarise


def build_suite(params: Params, num_classes: int, names: list[str] | None = None) -> list[Attack]:
    names = list(names or params.attack.suite)
    return [ATTACKS.get(n, key="attack.suite")(params.attack.settings[n], num_classes, params.seed) for n in names]


def evaluation_precision(device: torch.device) -> None:
    """fp32 everywhere; TF32 matmuls and convolutions on GPUs that have them."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


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


def test_subset(dataset: str, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, str]:
    x, y = load_split(dataset, "test")
    return x[:n].to(device), y[:n].to(device), f"first {min(n, len(y))} images of the {dataset} test split"


def attack_run(dataset: str, run: str, params: Params, show_progress: bool | None = None) -> Path:
    return attack_subject(pipeline_subject(dataset, run), params, show_progress)


def attack_subject(subject: Subject, params: Params, show_progress: bool | None = None) -> Path:
    """Evaluate `subject` under the suite; writes its record and per-example flags."""
    dataset, run, model = subject.dataset, subject.run, subject.model
    attacks = build_suite(params, subject.meta["num_classes"])
    device = resolve_device(params.device)
    model.to(device)
    x, y, subset = test_subset(dataset, params.attack.n, device)
    for attack in attacks:
        attack.check_input(tuple(x.shape[1:]))
    evaluation_precision(device)
    with progress(show_progress) as bar:
        task = bar.add_task(f"attack {run}@{dataset}", total=len(attacks), info="")
        evaluation = evaluate(model.float(), x.float(), y, attacks, params.attack.batch_size, params.seed,
                              on_attack=lambda name: bar.advance(task))
    record = {
        "dataset": dataset,
        "run": run,
        "checkpoint": subject.checkpoint,
        **({"external": subject.origin} if subject.origin is not None else {}),
        "n": len(y),
        "subset": subset,
        "seed": params.seed,
        "device": str(device),
        "evaluation": {"precision": "fp32" + (" (TF32 matmuls)" if device.type == "cuda" else ""),
                       "batch_size": params.attack.batch_size,
                       "note": "data cut to the first n test images; every attack at its configured budget"},
        "versions": library_versions(),
        "training": subject.info.get("settings", {}),
        **summarise(evaluation, attacks),
    }
    flags = {"clean": evaluation.clean, "worst_case": evaluation.worst_case()}
    flags.update({name: o.robust for name, o in evaluation.outcomes.items()})
    save_tensors(paths.attack_flags(dataset, run), flags, {"n": len(y), "subset": subset})
    out = paths.attack_result(dataset, run)
    write_json(out, record)
    return out
