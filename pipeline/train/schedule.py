"""Learning-rate schedules as pure functions of the epoch (nothing to checkpoint)."""

from __future__ import annotations

from ..params import TrainParams


def milestone_epochs(epochs: int, fractions: list[float]) -> list[int]:
    """The paper's 'divide at 75% and 90%' as epoch indices (75 and 90 of 100)."""
    return [int(round(f * epochs)) for f in fractions]


def lr_at(train: TrainParams, epoch: int, epochs: int | None = None) -> float:
    """Learning rate for 0-based `epoch` of a run lasting `epochs` (default train.epochs)."""
    s = train.lr_schedule
    if s.kind == "piecewise":
        passed = sum(epoch >= m for m in milestone_epochs(epochs or train.epochs, s.milestones))
    else:
        passed = epoch // s.every
    return train.lr * s.gamma**passed
