"""The attack stage: evaluate one checkpoint under the configured suite and write its record."""

from __future__ import annotations

import contextlib
import hashlib
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
from ..train import distributed
from .base import Attack, build
from .blocks import Store, evaluation_key, gather_bytes
from .evaluate import Plan, evaluate, summarise

#: The package whose source is part of a partial evaluation's key (any code change starts afresh).
PACKAGE = Path(__file__).resolve().parents[1]


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
    """Evaluate `subject` under the suite; writes its record and per-example flags.

    Under torchrun (`torchrun --nproc-per-node G -m pipeline stage attack ...`) every rank attacks its share
    of the blocks on its own device and rank 0, holding the attack lock, writes the one record: the same
    bytes for any number of ranks but the fields stating the ranks and devices.
    """
    ranks = distributed.from_environment()
    device = distributed.start(ranks, resolve_device(params.device))
    try:
        with run_lock("attack", subject.dataset, subject.run) if ranks.main else contextlib.nullcontext():
            if ranks.main:
                check_writable(paths.attack_result(subject.dataset, subject.run),
                               paths.attack_flags(subject.dataset, subject.run))
            return _attack_subject(subject, params, ranks, device, show_progress)
    finally:
        distributed.stop(ranks)


def progress_store(subject: Subject, params: Params, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> Store:
    """Where this evaluation's finished blocks are kept: under .otjr/, keyed by every input of its result (params
    but the worker count, the weights, the images, the code, the arithmetic), so changed inputs start afresh."""
    settings = params.model_dump(mode="json")
    settings["attack"].pop("workers", None)
    code = sorted((p.relative_to(PACKAGE).as_posix(), p.read_bytes()) for p in PACKAGE.rglob("*.py"))
    key = evaluation_key([settings, [(name, hashlib.sha256(text).hexdigest()) for name, text in code],
                          device.type, torch.get_num_threads(), library_versions()],
                         [*subject.model.state_dict().values(), x, y])
    return Store(paths.work_dir() / "attack" / paths.run_folder(subject.dataset) / subject.run / key)


def _attack_subject(subject: Subject, params: Params, ranks: distributed.Ranks, device: torch.device,
                    show_progress: bool | None) -> Path:
    dataset, run, model = subject.dataset, subject.run, subject.model
    attacks = checked_suite(params, subject.meta)
    model.to(device)
    x, y, subset = test_subset(dataset, params.attack.n, device, params.eval_split)
    evaluation_precision(device)
    store = progress_store(subject, params, x, y, device)
    if ranks.main:
        store.discard_others()
    plan = Plan(params.attack.block, ranks, store)
    with progress(show_progress if ranks.main else False) as bar:
        task = bar.add_task(f"attack {run}@{dataset}", total=len(attacks), info="")
        evaluation = evaluate(model.float(), x.float(), y, attacks, params.attack.batch_size, params.seed,
                              on_attack=lambda name: bar.update(task, advance=1, info=f"{name} done"),
                              precision=params.attack.precision,
                              n_of={a.name: params.attack.n_of(a.name) for a in attacks},
                              workers=params.attack.workers, plan=plan)
    devices = [d.decode() for d in gather_bytes(str(device).encode(), ranks, device)]
    if evaluation is None:  # another rank than 0: its blocks are in rank 0's evaluation
        return paths.attack_result(dataset, run)
    record = {
        "dataset": dataset,
        "run": run,
        "checkpoint": subject.checkpoint,
        **({"external": subject.origin} if subject.origin is not None else {}),
        "n": len(y),
        "subset": subset,
        "seed": params.seed,
        "device": ", ".join(dict.fromkeys(devices)),
        "evaluation": {"precision": evaluation_label(params.attack.precision, device, attacks),
                       "batch_size": params.attack.batch_size, "block": params.attack.block,
                       "ranks": ranks.size, "threads": torch.get_num_threads(),
                       "note": f"data cut to the first n {params.eval_split} images (an attack's own n where it sets one); "
                               "every attack at its configured budget; each block of images attacked in an RNG "
                               "seeded from (seed, block)"},
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
    store.finish()
    timing.write("attack", dataset, run, device=record["device"], ranks=ranks.size, devices=devices,
                 seconds={name: round(o.seconds, 3) for name, o in evaluation.outcomes.items()},
                 clean_seconds=round(evaluation.clean_seconds, 3))
    return out
