"""Tiny models trained on the embedded digits for the attack and sanity tests (seconds on a CPU).

Trained in memory with a minimal loop, independent of the pipeline's trainer, so the attack
tests do not move when training code changes: an undefended XE model, a PGD-AT model, and
a deliberately gradient-masked one (the XE model behind an input-rounding layer, whose
input gradient is zero everywhere).
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

EPS = 0.2  # the default L-inf budget of params.yaml's attack block for digits


@dataclass
class Digits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@functools.cache
def digits() -> Digits:
    """The embedded digits' train and test splits as float tensors (read once per test session)."""
    from pipeline.data.digits import download, read

    with tempfile.TemporaryDirectory() as tmp:
        download(Path(tmp))
        splits = read(Path(tmp)).splits
    (xtr, ytr), (xte, yte) = splits["train"], splits["test"]
    return Digits(xtr.float() / 255, ytr, xte.float() / 255, yte)


@contextlib.contextmanager
def one_thread():
    """torch on one CPU thread (params.yaml's default `threads`), the count restored after: a result that does not depend
    on the core count or on what an earlier test set (a stage's `threads` sets torch's for the process)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def trained(kind: str) -> nn.Module:
    """'xe' or 'pgd_at', trained once per test session (on one thread); callers must not modify it."""
    with one_thread():
        return train(digits(), adversarial={"xe": False, "pgd_at": True}[kind])


def small_cnn(data: Digits, width: int = 16) -> nn.Module:
    from pipeline.models import create

    mean = data.x_train.mean().item()
    std = data.x_train.std().item()
    return create("small_cnn", num_classes=10, in_channels=1, mean=[mean], std=[std], width=width)


def train(data: Digits, adversarial: bool, epochs: int = 15, seed: int = 0) -> nn.Module:
    """SGD on cross-entropy, on clean inputs (XE) or on PGD-10 examples at eps 0.2 (PGD-AT)."""
    from pipeline.core.pgd import Adversary

    torch.manual_seed(seed)
    model = small_cnn(data)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=2e-4)
    adversary = Adversary(EPS, EPS / 4, 10)
    n = len(data.y_train)
    for _ in range(epochs):
        for idx in torch.randperm(n).split(64):
            x, y = data.x_train[idx], data.y_train[idx]
            if adversarial:
                x = adversary.perturb(model, x, y)
            model.train()
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


class RoundedInput(nn.Module):
    """`model` applied to its input rounded to 1/4 steps: zero input gradient, a masked model."""

    def __init__(self, model: nn.Module, levels: int = 4):
        super().__init__()
        self.model = model
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * self.levels) / self.levels)
