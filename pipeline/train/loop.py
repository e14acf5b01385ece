"""The one trainer every method shares.

SGD with momentum and weight decay, an epoch-wise LR schedule, the method's loss on each
batch, per-epoch clean / PGD accuracy on held-out images logged through dvclive, a resume
state after every epoch, and a final safetensors checkpoint. One process per run (a lock);
the tracked logs and the checkpoint change together when training succeeds
(pipeline/train/results.py). Data stays on the training device; shuffling and
augmentation happen there. `speed:` in params.yaml picks the speed
options (pipeline/train/speed.py); under torchrun the processes train one model together
(pipeline/train/distributed.py).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from dvclive import Live

from ..core import paths, timing
from ..core.device import resolve_device
from ..core.errors import UserError
from ..core.io import check_writable
from ..core.lock import run_lock
from ..core.pgd import Adversary
from ..core.progress import progress
from ..core.versions import library_versions
from ..data import DATASETS, load_meta
from ..data.prepare import has_split, load_split_uint8
from ..methods import ADDONS, METHODS, AddOnSetup, Method, Run, Setup
from ..methods.jacobian import jacobian_mode
from ..models import save_checkpoint
from ..models.init import initial_model, training_spec
from ..params import Params, as_written
from . import distributed, results
from .batches import training_batches
from .monitor import accuracy, robust_accuracy
from .schedule import lr_at
from .speed import prepare
from .speed import resolve as resolve_speed
from .state import fingerprint, load_state, save_state
from .step import Step


def training_settings(dataset: str, run: Run, params: Params, meta: dict, processes: int = 1) -> dict[str, Any]:
    """Everything that determines the trained weights; recorded in the checkpoint and fingerprinted."""
    method = METHODS.get(run.method)
    settings = as_written(params.for_run(run))
    return {
        "dataset": dataset,
        "run": run.name,
        "seed": params.seed,
        "model": params.model.model_dump(),
        "train": params.train.model_dump(),
        "adversary": params.adversary.model_dump(),
        "method": {method.param_block: settings} if method.param_block else settings,
        "addons": {name: as_written(params.for_addon(name)) for name in run.addons},
        "data": {"sources": meta["sources"], "sizes": meta["sizes"], "val_fraction": meta["val_fraction"],
                 "augment": augmentation(DATASETS.get(dataset, key="dataset"), params.train)},
        "speed": params.speed.model_dump(),
        "threads": params.threads,
        "processes": processes,
    }


def augmentation(spec, train) -> str:
    """The training augmentation: `train.augment`, or the dataset's own when it says `dataset`."""
    return spec.augment if train.augment == "dataset" else train.augment


def fit(dataset: str, run: Run, params: Params, *, resume: bool = True, show_progress: bool | None = None) -> Path:
    """Train `run` on `dataset` with `params`; returns the checkpoint path.

    Under torchrun (WORLD_SIZE > 1) every process runs this with its shard of each batch;
    rank 0 writes the logs, the resume state and the checkpoint.
    """
    ranks = distributed.from_environment()
    with run_lock("train", dataset, run.name) if ranks.main else contextlib.nullcontext():
        if ranks.main:
            check_writable(paths.checkpoint(dataset, run.name), paths.train_log_dir(dataset, run.name))
            results.place(dataset, run.name)  # a run killed while placing its results: finish that first
        device = distributed.start(ranks, resolve_device(params.device))
        try:
            out = _fit(dataset, run, params, ranks, device, resume, show_progress if ranks.main else False)
            distributed.barrier(ranks)  # leave together: a rank tearing down gloo while another still talks aborts
            return out
        finally:
            distributed.stop(ranks)


@dataclass
class Trainee:
    """What one run trains and how: the model (and its spec), the method, the step (add-on included), the epochs."""

    model: torch.nn.Module
    spec: dict[str, Any]
    adversary: Adversary
    method: Method
    step: Step
    epochs: int


def _fit(dataset: str, run: Run, params: Params, ranks: distributed.Ranks, device: torch.device, resume: bool,
         show_progress: bool | None) -> Path:
    """One run in this process: build what it trains, its data, resume, train the epochs, save the checkpoint."""
    spec = DATASETS.get(dataset, key="dataset")
    meta = load_meta(dataset)
    t = params.train
    distributed.check_batch_size(t.batch_size, ranks, params.speed.sync_batchnorm, device)
    settings = training_settings(dataset, run, params, meta, ranks.size)
    fp = fingerprint(settings)

    trainee = _trainee(run, params, meta, ranks, device)  # draws the initial weights from params.seed
    distributed.seed_rank(params.seed, ranks)
    batches = training_batches(dataset, device, t.batch_size, augmentation(spec, t), params.data.loader, params.data.workers,
                               ranks)
    held_out = _held_out(dataset, t, ranks, device)
    start, history = _resume(dataset, run, fp, trainee.step, ranks, device, resume)
    train_seconds = _epochs(dataset, run, params, trainee, batches, held_out, fp, start, history, ranks, device,
                            show_progress)
    if ranks.distributed and not distributed.same_everywhere(distributed.weights_digest(trainee.model), ranks, device):
        raise RuntimeError("the training processes ended with different weights")
    out = paths.checkpoint(dataset, run.name)
    if ranks.main:
        _save(out, dataset, run, trainee, settings, history, train_seconds, device)
    return out


def _trainee(run: Run, params: Params, meta: dict, ranks: distributed.Ranks, device: torch.device) -> Trainee:
    """Seed, then build the model, the method with its adversary, the optimizer, the add-on and the step, in that order."""
    speed = resolve_speed(params.speed, device)
    torch.manual_seed(params.seed)
    mspec = training_spec(params.model, meta)
    model = initial_model(mspec, params.model).to(device)
    model = prepare(distributed.convert_batchnorm(model, ranks, params.speed.sync_batchnorm), speed)
    a = params.adversary
    adversary = Adversary(a.eps, a.step, a.steps, a.start, a.start_std)
    method_cls = METHODS.get(run.method, key="method")
    jacobian = jacobian_mode(params.speed.jacobian, params.speed.fd_step)
    method = method_cls(params.for_run(run), Setup(adversary, meta["num_classes"], jacobian))
    t = params.train
    optimizer = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                                nesterov=t.nesterov)
    addon = None
    for name in run.addons:  # parse_run allows at most one
        setup = AddOnSetup(model, optimizer, lambda: initial_model(mspec, params.model).to(device),
                           lambda tensors: distributed.mean_over_ranks(tensors, ranks))
        addon = ADDONS.get(name)(params.for_addon(name), setup)
    step = Step(model, optimizer, method, addon, speed=speed, ranks=ranks, device=device)
    return Trainee(model, mspec, adversary, method, step, method.epochs(t.epochs))


def _held_out(dataset: str, t, ranks: distributed.Ranks, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The first `train.eval_n` validation images the main process monitors each epoch (None: no monitoring)."""
    split = "val" if has_split(dataset, "val") else None
    if split is None and t.eval_n:
        raise UserError(f"train.eval_n: {dataset} has no validation split; set data.val_fraction > 0 or eval_n: 0")
    if not (split and t.eval_n and ranks.main):
        return None
    xv, yv = load_split_uint8(dataset, split, limit=t.eval_n)
    return xv[: t.eval_n].to(device).float().div_(255), yv[: t.eval_n].to(device)


def _resume(dataset: str, run: Run, fp: str, step: Step, ranks: distributed.Ranks, device: torch.device,
            resume: bool) -> tuple[int, list[dict]]:
    """(first epoch to train, history so far): restored from the resume state into `step`'s modules and optimizers."""
    state_path = paths.resume_state(dataset, run.name)
    restored = None
    if resume:
        restored = load_state(state_path, fingerprint=fp, modules=step.modules, optimizers=step.optimizers,
                              restore_extra=lambda tensors: distributed.restore_rank(tensors, step.modules, ranks,
                                                                                     device))
    start, history = (restored.epoch, restored.history) if restored else (0, [])
    if ranks.distributed and not distributed.same_everywhere(start, ranks, device):
        raise UserError(f"{state_path}: the training processes found different resume states; "
                        "every node must see the project directory (a shared filesystem)")
    return start, history


def _epochs(dataset: str, run: Run, params: Params, trainee: Trainee, batches, held_out, fp: str, start: int,
            history: list[dict], ranks: distributed.Ranks, device: torch.device, show_progress: bool | None) -> float:
    """Train epochs `start` .. end, appending to `history`, logging and saving the resume state after each;
    returns the training seconds of the whole run (resumed epochs included)."""
    t, step, epochs = params.train, trainee.step, trainee.epochs
    state_path = paths.resume_state(dataset, run.name)
    live = None
    if ranks.main:
        logs = results.begin(dataset, run.name)  # tracked logs change only when training succeeds
        live = Live(str(logs), dvcyaml=None, save_dvc_exp=False, report=None)
        for record in history:  # a resumed run's logs are rebuilt from its history, as if never stopped
            _log(live, record)
    train_seconds = sum(r["seconds"] for r in history)
    with progress(show_progress) as bar:
        task = bar.add_task(f"train {run.name}@{dataset}", total=epochs * len(batches), completed=start * len(batches), info="")
        for epoch in range(start, epochs):
            lr = lr_at(t, epoch, epochs)
            step.start_epoch(epoch, lr)
            tic = time.perf_counter()
            sums: dict[str, torch.Tensor] = {}
            for x, y in batches.epoch(params.seed, epoch):
                loss = step(x, y)
                for k, v in {"loss": loss.total.detach(), **loss.terms}.items():
                    sums[k] = sums.get(k, 0) + v
                bar.advance(task)
            sums = dict(zip(sums, distributed.mean_over_ranks(list(sums.values()), ranks)))
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - tic
            train_seconds += seconds
            record = {"epoch": epoch + 1, "lr": lr, "seconds": seconds}
            record.update({f"train/{k}": float(v) / len(batches) for k, v in sums.items()})
            if held_out is not None:
                xv, yv = held_out
                record["val/clean_acc"] = accuracy(trainee.model, xv, yv, t.batch_size)
                record["val/pgd_acc"] = robust_accuracy(trainee.model, trainee.adversary, xv, yv, t.batch_size)
            history.append(record)
            own = distributed.rank_states(step.modules, ranks, device)
            if ranks.main:
                _log(live, record)
                bar.update(task, info=f"epoch {epoch + 1}/{epochs} loss {record['train/loss']:.3f}")
                save_state(state_path, fingerprint=fp, epoch=epoch + 1, history=history, modules=step.modules,
                           optimizers=step.optimizers, extra=own)
    if live is not None:
        live.end()
    return train_seconds


def _save(out: Path, dataset: str, run: Run, trainee: Trainee, settings: dict, history: list[dict],
          train_seconds: float, device: torch.device) -> None:
    """The final checkpoint with what produced it, placed together with the training logs."""
    info = {
        "dataset": dataset,
        "run": run.name,
        "method": run.method,
        "addons": list(run.addons),
        "settings": settings,
        "final": {k: v for k, v in history[-1].items() if k != "seconds"} if history else {},
        "device": str(device),
        "versions": library_versions(),
    }
    results.commit(dataset, run.name, lambda path: save_checkpoint(path, trainee.model.cpu(), trainee.spec, info))
    # wall times vary run to run: beside the checkpoint, never in it
    timing.write("train", dataset, run.name, device=str(device), train_seconds=train_seconds,
                 epoch_seconds=[r["seconds"] for r in history])


def _log(live, record: dict[str, float]) -> None:
    for k, v in record.items():
        if k not in ("epoch", "seconds"):  # wall time would make every `dvc metrics diff` noisy
            live.log_metric(k, v, plot=True)
    live.next_step()
