"""The attack stage: evaluate one checkpoint under the configured suite and write its record."""

from __future__ import annotations

from pathlib import Path

import torch

from ..core import paths, timing
from ..core.device import resolve_device
from ..core.io import check_writable, save_tensors, write_json
from ..core.lock import run_lock
from ..core.progress import progress
from ..core.versions import library_versions
from ..models.subject import Subject, pipeline_subject, test_subset
from ..params import Params
from .base import Attack, build
from .evaluate import evaluate, summarise


def build_suite(params: Params, num_classes: int, names: list[str] | None = None) -> list[Attack]:
    names = list(names or params.attack.suite)
    return [build(params.attack, n, num_classes, params.seed) for n in names]


def checked_suite(params: Params, meta: dict[str, Any]) -> list[Attack]:
    """The suite for a prepared dataset's `meta`, each attack checked against its images (input, eps budget)."""
    attacks = build_suite(params, meta["num_classes"])
    for attack in attacks:
        attack.check_input(tuple(meta["shape"]))
        attack.check_budget(tuple(meta["shape"]))
    return attacks


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
    attacks = checked_suite(params, subject.meta)
    device = resolve_device(params.device)
    model.to(device)
    x, y, subset = test_subset(dataset, params.attack.n, device)
    evaluation_precision(device)
    with progress(show_progress) as bar:
        task = bar.add_task(f"attack {run}@{dataset}", total=len(attacks), info="")
        evaluation = evaluate(model.float(), x.float(), y, attacks, params.attack.batch_size, params.seed,
                              on_attack=lambda name: bar.update(task, advance=1, info=f"{name} done"),
                              precision=params.attack.precision,
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
    timing.write("attack", dataset, run, device=str(device),
                 seconds={name: round(o.seconds, 3) for name, o in evaluation.outcomes.items()})
    return out
