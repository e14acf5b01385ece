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
from ..core.io import check_writable, save_tensors, write_json
from ..core.lock import run_lock
from ..core.progress import progress
from ..core.versions import library_versions
from ..data import load_meta, load_split
from ..models import load_checkpoint
from ..params import Params
from .base import Attack, build
from .evaluate import evaluate, summarise


def build_suite(params: Params, num_classes: int, names: list[str] | None = None) -> list[Attack]:
    names = list(names or params.attack.suite)
    return [build(params.attack, n, num_classes, params.seed) for n in names]


def evaluation_precision(device: torch.device) -> None:
    """fp32 everywhere; TF32 matmuls and convolutions on GPUs that have them."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def evaluation_label(precision: str, device: torch.device, attacks: list[Attack]) -> str:
    """How the record names the evaluation's arithmetic (fp32 is the paper's protocol)."""
    fp32 = "fp32" + (" (TF32 matmuls)" if device.type == "cuda" else "")
    if precision == "bf16":
        kept = ", ".join(a.name for a in attacks if a.fp32_only) or "none"
        return (f"bf16 autocast of the model's forward passes (clean predictions and {kept}: {fp32}), "
                "fp32 logits and attack arithmetic")
    return fp32


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
    """Evaluate the run's checkpoint; every input is checked before the work."""
    return attack_subject(pipeline_subject(dataset, run), params, show_progress)


def attack_subject(subject: Subject, params: Params, show_progress: bool | None = None) -> Path:
    """Evaluate `subject` under the suite, holding its attack lock; writes its record and per-example flags."""
    with run_lock("attack", subject.dataset, subject.run):
        check_writable(paths.attack_result(subject.dataset, subject.run), paths.attack_flags(subject.dataset, subject.run))
        return _attack_subject(subject, params, show_progress)


def _attack_subject(subject: Subject, params: Params, show_progress: bool | None) -> Path:
    dataset, run, model = subject.dataset, subject.run, subject.model
    attacks = build_suite(params, subject.meta["num_classes"])
    for attack in attacks:
        attack.check_input(tuple(subject.meta["shape"]))
        attack.check_budget(tuple(subject.meta["shape"]))
    device = resolve_device(params.device)
    model.to(device)
    x, y, subset = test_subset(dataset, params.attack.n, device)
    evaluation_precision(device)
    with progress(show_progress) as bar:
        task = bar.add_task(f"attack {run}@{dataset}", total=len(attacks), info="")
        evaluation = evaluate(model.float(), x.float(), y, attacks, params.attack.batch_size, params.seed,
                              on_attack=lambda name: bar.advance(task), precision=params.attack.precision,
                              n_of={a.name: params.attack.n_of(a.name) for a in attacks},
                              workers=params.attack.workers)
    record = {
        "dataset": dataset,
        "run": run,
        "checkpoint": subject.checkpoint,
        **({"external": subject.origin} if subject.origin is not None else {}),
        "n": len(y),
        "subset": subset,
        "seed": params.seed,
        "device": str(device),
        "evaluation": {"precision": evaluation_label(params.attack.precision, device, attacks),
                       "batch_size": params.attack.batch_size, "threads": torch.get_num_threads(),
                       "note": "data cut to the first n test images (an attack's own n where it sets one); "
                               "every attack at its configured budget"},
        "versions": library_versions(),
        "training": subject.info.get("settings", {}),
        **summarise(evaluation, attacks),
    }
    flags = {"clean": evaluation.clean, "worst_case": evaluation.worst_case()}
    flags.update({name: o.robust for name, o in evaluation.outcomes.items()})
    save_tensors(paths.attack_flags(dataset, run), flags, {"n": len(y), "subset": subset,
                                                           "worst_case_n": evaluation.worst_case_n})
    out = paths.attack_result(dataset, run)
    write_json(out, record)
    return out
