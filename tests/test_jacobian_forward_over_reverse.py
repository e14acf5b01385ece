"""The forward-over-reverse Jacobian penalty measured in bench/ is today's penalty, value and weight gradient, in float64.

(docs/benchmarks.md: it is exact but slower on the CPU, so the trainer keeps double backward;
this keeps the measured alternative honest.)
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from jacobian_forward_over_reverse import check  # noqa: E402

from pipeline.models import create  # noqa: E402


def _plain():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(256, 10))


@pytest.mark.parametrize("build, shape", [
    (_plain, (1, 8, 8)),
    (lambda: create("small_cnn", num_classes=10, in_channels=1, width=4), (1, 8, 8)),
    (lambda: create("wrn34_10", num_classes=10, depth=10, widen=1), (3, 16, 16)),
])
def test_forward_over_reverse_equals_double_backward_in_float64(build, shape):
    torch.manual_seed(0)
    model = build().double().train()
    x = torch.rand(8, *shape, dtype=torch.float64)
    directions = F.normalize(torch.randn(8, 10, dtype=torch.float64), dim=1)
    result = check(model, x, directions)
    assert result["value_fr"] == pytest.approx(result["value_exact"], rel=1e-12)
    assert result["gradient_rel_error"] < 1e-11
