"""Learning-rate schedules as pure functions of the epoch (nothing to checkpoint).

Epoch counting: the trainer numbers epochs from 0. `lr_schedule.first_epoch: 1` counts
them from 1 as TRADES-style loops do (the OTJR authors' code among them): with milestones
at 75% and 90% of 100 epochs, the rate drops when the 1-based epoch number reaches 75 and
90, so 74 / 15 / 11 epochs run at the three rates instead of 75 / 15 / 10; a `step`
schedule every 7 epochs drops after 6 epochs first, then every 7.
"""

from __future__ import annotations

from ..params import TrainParams


def milestone_epochs(epochs: int, fractions: list[float]) -> list[int]:
    """The paper's 'divide at 75% and 90%' as epoch numbers (75 and 90 of 100)."""
    return [int(round(f * epochs)) for f in fractions]


def lr_at(train: TrainParams, epoch: int, epochs: int | None = None) -> float:
    """Learning rate for 0-based `epoch` of a run lasting `epochs` (default train.epochs)."""
    s = train.lr_schedule
    number = epoch + s.first_epoch  # the epoch as the schedule counts it
    if s.kind == "piecewise":
        passed = sum(number >= m for m in milestone_epochs(epochs or train.epochs, s.milestones))
    else:
        passed = number // s.every
    return train.lr * s.gamma**passed
