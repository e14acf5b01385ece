"""The paper's architectures: parameter counts pinned to the references, torchvision equivalence for
ResNet-50, and one training step of each on the CPU at reduced width."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from pipeline.core.errors import UserError
from pipeline.models import create


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name, args, exact, reference_m, digits",
    [
        ("wrn34_10", {}, 46_160_474, 46.16, 2),  # TRADES' WRN-34-10
        ("wrn28_10", {}, 36_479_194, 36.48, 2),
        ("preact_resnet18", {}, 11_172_170, 11.17, 2),  # with the final BN of Wong et al. / Rice et al.
        ("resnet50", {}, 23_520_842, 23.5, 1),  # 3x3 stem
        ("resnet50", {"imagenet_stem": True}, 23_528_522, 23.5, 1),
    ],
)
def test_parameter_counts_for_ten_classes(name, args, exact, reference_m, digits):
    n = _count(create(name, num_classes=10, **args))
    assert n == exact and round(n / 1e6, digits) == reference_m


def test_resnet50_is_torchvisions_resnet50():
    ref = torchvision.models.resnet50(num_classes=10).eval()
    ours = create("resnet50", num_classes=10, imagenet_stem=True).eval()
    assert _count(ours) == _count(ref)
    ours.net.load_state_dict(ref.state_dict(), strict=True)  # same names and shapes
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


@pytest.mark.parametrize(
    "name, args, size",
    [
        ("wrn34_10", {"depth": 10, "widen": 1}, 16),
        ("wrn28_10", {"depth": 16, "widen": 1, "drop": 0.3}, 16),
        ("preact_resnet18", {"width": 4, "depth": 10}, 16),
        ("preact_resnet18", {"width": 4, "depth": 10, "imagenet_stem": True}, 32),
        ("resnet50", {"width": 4, "depth": 14}, 16),
        ("resnet50", {"width": 4, "depth": 14, "imagenet_stem": True}, 64),
    ],
)
def test_every_model_trains_a_step_at_reduced_width(name, args, size):
    torch.manual_seed(0)
    model = create(name, num_classes=5, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3, **args)
    x, y = torch.rand(4, 3, size, size), torch.tensor([0, 1, 2, 3])
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert sum(not torch.equal(a, b) for a, b in zip(before, model.parameters())) == len(before)
    assert model.eval()(x).shape == (4, 5)


def test_bad_depth_is_one_line():
    for name, args in [("wrn34_10", {"depth": 33}), ("resnet50", {"depth": 51}), ("preact_resnet18", {"depth": 19})]:
        with pytest.raises(UserError, match="does not accept") as err:
            create(name, num_classes=10, **args)
        assert "depth must be" in str(err.value)
