"""The losses the suite's iterative attacks ascend (CE, the logit margin, CW's), on the shared PGD loop.

The loop itself is `pipeline.core.pgd.ascend` (also the trainer's and the analyses'); the
suite runs it with labels, so each example leaves the batch at its first misclassified
iterate. `on_labels` turns a per-example loss into the scalar objective the loop ascends.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..core.pgd import Objective

#: Per-example loss to maximise: (logits, labels) -> tensor of shape (batch,).
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{i != y} z_i: positive while the example is classified correctly."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return true - other


def cw_loss(kappa: float) -> LossFn:
    """Carlini-Wagner's margin objective with confidence kappa: -max(margin + kappa, 0)."""
    return lambda logits, y: -(margin(logits, y) + kappa).clamp(min=0)


def on_labels(loss: LossFn, y: torch.Tensor) -> Objective:
    """The batch sum of `loss` on the rows still attacked, against their labels in `y`."""
    return lambda logits, rows: loss(logits, y[rows]).sum()
