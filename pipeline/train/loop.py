"""The one trainer every method shares.

SGD with momentum and weight decay, an epoch-wise LR schedule, the method's loss on each
batch, per-epoch clean / PGD accuracy on held-out images logged through dvclive, a resume
state after every epoch, and a final safetensors checkpoint. Data stays on the training
device; shuffling and augmentation happen there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..core import paths
from ..core.device import resolve_device
from ..core.errors import UserError
from ..core.progress import progress
from ..core.versions import library_versions
from ..data import DATASETS, load_meta
from ..data.prepare import has_split, load_split_uint8
from ..methods import METHODS, Loss, Method, Run, Setup
from ..models import build, model_spec, save_checkpoint
from ..params import Params
from .adversary import Adversary
from .augment import augment
from .schedule import lr_at
from .state import fingerprint, load_state, save_state


def training_settings(dataset: str, run: Run, params: Params, meta: dict) -> dict[str, Any]:
    """Everything that determines the trained weights; recorded in the checkpoint and fingerprinted."""
    method_keys = METHODS.get(run.method).param_keys()
    return {
        "dataset": dataset,
        "run": run.name,
        "seed": params.seed,
        "model": params.model.model_dump(),
        "train": params.train.model_dump(),
        "adversary": params.adversary.model_dump(),
        "method": {k: params.raw[k] for k in method_keys},
        "data": {"sources": meta["sources"], "sizes": meta["sizes"], "val_fraction": meta["val_fraction"]},
    }


@dataclass
class Batches:
    """Training images on the device as uint8; each epoch's order comes from (seed, epoch)."""

    images: torch.Tensor
    labels: torch.Tensor
    batch_size: int
    augment: str

    def __len__(self) -> int:
        return max(1, len(self.labels) // self.batch_size)  # drop the ragged tail (BN needs > 1 image)

    def epoch(self, seed: int, epoch: int):
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.labels), generator=g).to(self.images.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images[idx].float().div_(255)
            yield augment(self.augment, x), self.labels[idx]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Top-1 accuracy in percent (eval mode, no grad)."""
    if len(y) == 0:
        return float("nan")
    was = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            correct += (model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum().item()
    model.train(was)
    return 100.0 * correct / len(y)


def robust_accuracy(model: nn.Module, adversary: Adversary, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    if len(y) == 0:
        return float("nan")
    chunks = [adversary.perturb(model, x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]
    return accuracy(model, torch.cat(chunks), y, batch_size)


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer, method: Method) -> Callable[[torch.Tensor, torch.Tensor], Loss]:
    """One optimisation step of `method` (add-ons wrap this)."""

    def step(x: torch.Tensor, y: torch.Tensor) -> Loss:
        loss = method.loss(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()
        return loss

    return step


def fit(dataset: str, run: Run, params: Params, *, resume: bool = True, show_progress: bool | None = None) -> Path:
    """Train `run` on `dataset` with `params`; returns the checkpoint path."""
    from dvclive import Live

    spec = DATASETS.get(dataset, key="dataset")
    meta = load_meta(dataset)
    device = resolve_device(params.device)
    t = params.train
    settings = training_settings(dataset, run, params, meta)
    fp = fingerprint(settings)

    torch.manual_seed(params.seed)
    mspec = model_spec(params.model.name, params.model.args, meta["num_classes"], meta["shape"][0], meta["mean"], meta["std"])
    model = build(mspec).to(device)
    adversary = Adversary(params.adversary.eps, params.adversary.step, params.adversary.steps)
    method_cls = METHODS.get(run.method, key="method")
    method = method_cls(params.for_method(run.method), Setup(adversary=adversary, num_classes=meta["num_classes"]))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=t.nesterov
    )
    if run.addons:
        raise UserError(f"method: add-ons {', '.join(run.addons)} are not implemented yet")
    step = make_step(model, optimizer, method)

    images, labels = load_split_uint8(dataset, "train")
    batches = Batches(images.to(device), labels.to(device), t.batch_size, spec.augment)
    split = "val" if has_split(dataset, "val") else None
    if split is None and t.eval_n:
        raise UserError(f"train.eval_n: {dataset} has no validation split; set data.val_fraction > 0 or eval_n: 0")
    if split:
        xv, yv = load_split_uint8(dataset, split)
        xv, yv = xv[: t.eval_n].to(device).float().div_(255), yv[: t.eval_n].to(device)

    state_path = paths.resume_state(dataset, run.name)
    modules, optimizers = {"model": model}, {"sgd": optimizer}
    restored = load_state(state_path, fingerprint=fp, modules=modules, optimizers=optimizers) if resume else None
    start, history = (restored.epoch, restored.history) if restored else (0, [])

    live = Live(str(paths.train_log_dir(dataset, run.name)), dvcyaml=None, save_dvc_exp=False, report=None)
    for record in history:  # DVC removes outputs before a stage runs: replay what was logged
        _log(live, record)

    train_seconds = sum(r["time/epoch_s"] for r in history)
    with progress(show_progress) as bar:
        task = bar.add_task(f"train {run.name}@{dataset}", total=t.epochs * len(batches), completed=start * len(batches), info="")
        for epoch in range(start, t.epochs):
            lr = lr_at(t, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.train()
            tic = time.perf_counter()
            sums: dict[str, torch.Tensor] = {}
            for x, y in batches.epoch(params.seed, epoch):
                loss = step(x, y)
                for k, v in {"loss": loss.total.detach(), **loss.terms}.items():
                    sums[k] = sums.get(k, 0) + v
                bar.advance(task)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - tic
            train_seconds += seconds
            record = {"epoch": epoch + 1, "lr": lr, "time/epoch_s": seconds}
            record.update({f"train/{k}": float(v) / len(batches) for k, v in sums.items()})
            if split and t.eval_n:
                record["val/clean_acc"] = accuracy(model, xv, yv, t.batch_size)
                record["val/pgd_acc"] = robust_accuracy(model, adversary, xv, yv, t.batch_size)
            history.append(record)
            _log(live, record)
            bar.update(task, info=f"loss {record['train/loss']:.3f}")
            save_state(state_path, fingerprint=fp, epoch=epoch + 1, history=history, modules=modules, optimizers=optimizers)
    live.end()

    info = {
        "dataset": dataset,
        "run": run.name,
        "method": run.method,
        "addons": list(run.addons),
        "settings": settings,
        "final": history[-1] if history else {},
        "train_seconds": train_seconds,
        "device": str(device),
        "versions": library_versions(),
    }
    out = paths.checkpoint(dataset, run.name)
    save_checkpoint(out, model.cpu(), mspec, info)
    state_path.unlink(missing_ok=True)
    return out


def _log(live, record: dict[str, float]) -> None:
    for k, v in record.items():
        if k != "epoch":
            live.log_metric(k, v, plot=True)
    live.next_step()
