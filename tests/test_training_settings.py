"""The training settings that match the authors' code: PGD's random start (distribution, support),
the 1-based LR count (against a naive copy of the TRADES-style rule), and the rotation augmentation
(against torchvision's rotate)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import nn

from pipeline.params import LRSchedule, TrainParams
from pipeline.core.pgd import Adversary, start_point
from pipeline.train.augment import augment, flip, rotate
from pipeline.train.schedule import lr_at

N = 200_000


def test_uniform_start_fills_the_ball_uniformly():
    torch.manual_seed(0)
    x = torch.full((N,), 0.5)
    d = (start_point(x, 0.1, "uniform") - x).double()
    assert d.min() >= -0.1 and d.max() <= 0.1
    assert abs(d.mean().item()) < 5 * (0.1 / math.sqrt(3)) / math.sqrt(N)
    assert d.std().item() == pytest.approx(0.1 / math.sqrt(3), rel=0.01)
    assert stats.kstest(d.numpy(), stats.uniform(-0.1, 0.2).cdf).pvalue > 1e-3


def test_gaussian_start_has_the_given_std():
    torch.manual_seed(0)
    x = torch.full((N,), 0.5)
    d = (start_point(x, 8 / 255, "gaussian", 0.001) - x).double()
    assert abs(d.mean().item()) < 5 * 0.001 / math.sqrt(N)
    assert d.std().item() == pytest.approx(0.001, rel=0.01)
    # float32 rounding of 0.5 + d: compare against the normal at the resolution of the grid
    assert stats.kstest(d.numpy(), stats.norm(0, 0.001).cdf).pvalue > 1e-3


def test_every_start_stays_in_the_ball_and_the_image():
    torch.manual_seed(0)
    x = torch.rand(N)
    x[:1000], x[1000:2000] = 0.0, 1.0
    for kind, std in (("uniform", 0.001), ("gaussian", 0.05)):
        s = start_point(x, 0.03, kind, std)
        assert s.min() >= 0 and s.max() <= 1
        assert (s - x).abs().max() <= 0.03 + 1e-7
    with pytest.raises(ValueError, match="gaussian"):
        start_point(x, 0.03, "laplace")


def test_the_training_adversary_starts_as_configured():
    """With zero steps the adversary returns its start: the gaussian one moves pixels by ~0.001."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    x, y = torch.full((500, 1, 8, 8), 0.5), torch.zeros(500, dtype=torch.long)
    torch.manual_seed(0)
    g = Adversary(0.1, 0.01, 0, "gaussian", 0.001).perturb(model, x, y) - x
    u = Adversary(0.1, 0.01, 0).perturb(model, x, y) - x
    assert g.std().item() == pytest.approx(0.001, rel=0.05)
    assert u.std().item() == pytest.approx(0.1 / math.sqrt(3), rel=0.05)


def _train(kind="piecewise", first_epoch=0, epochs=100, every=0, milestones=(0.75, 0.9)):
    schedule = LRSchedule(kind=kind, milestones=list(milestones) if kind == "piecewise" else [], every=every,
                          gamma=0.1, first_epoch=first_epoch)
    return TrainParams(epochs=epochs, batch_size=128, lr=0.1, momentum=0.9, weight_decay=2e-4, nesterov=False,
                       lr_schedule=schedule, eval_n=0)


def _epochs_per_rate(rates):
    out = {}
    for r in rates:
        out[round(r, 12)] = out.get(round(r, 12), 0) + 1
    return list(out.values())


def test_one_based_count_gives_the_trades_style_74_15_11():
    ours = [lr_at(_train(first_epoch=1), e) for e in range(100)]
    # the TRADES / OTJR-code rule, written out: epochs numbered 1..100, lr*0.1 from 75, lr*0.01 from 90
    theirs = [0.1 * (0.01 if epoch >= 90 else 0.1 if epoch >= 75 else 1) for epoch in range(1, 101)]
    assert ours == pytest.approx(theirs)
    assert _epochs_per_rate(ours) == [74, 15, 11]
    assert _epochs_per_rate([lr_at(_train(), e) for e in range(100)]) == [75, 15, 10]


def test_one_based_step_schedule_is_the_authors_intel_rule():
    ours = [lr_at(_train("step", 1, 50, every=7), e) for e in range(50)]
    theirs = [0.1 * 0.1 ** (epoch // 7) for epoch in range(1, 51)]  # their adjust_lr_intel, epochs 1..50
    assert ours == pytest.approx(theirs)
    assert _epochs_per_rate(ours)[:2] == [6, 7]


@pytest.mark.parametrize("degrees", [0.0, 12.0, -12.0, 4.5, -9.25])
def test_rotation_is_torchvisions(degrees):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    torch.manual_seed(0)
    x = torch.rand(3, 3, 32, 32)
    ours = rotate(x, torch.full((3,), degrees))
    for i in range(3):
        assert torch.equal(ours[i], TF.rotate(x[i], degrees, interpolation=InterpolationMode.NEAREST))


def test_rotate_flip_rotates_within_12_degrees_then_flips():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 32, 32)
    g = torch.Generator().manual_seed(3)
    out = augment("rotate_flip", x, generator=g)
    g = torch.Generator().manual_seed(3)
    angles = (torch.rand(64, generator=g) * 2 - 1) * 12
    assert angles.abs().max() <= 12 and angles.abs().min() < 1 < angles.abs().max()
    assert torch.equal(out, flip(rotate(x, angles), g))
    with pytest.raises(ValueError, match="rotate_flip"):
        augment("jitter", x)


def test_a_run_with_the_authors_settings_trains_and_records_them(digits):
    """One short training with every new setting switched on: the checkpoint holds an identity
    normalisation and records the settings that made it."""
    from conftest import TINY, write_params

    from pipeline import api
    from pipeline.models import checkpoint_info, load_checkpoint
    from pipeline.config import load_params

    write_params(digits, {**TINY, "train.epochs": 1, "train.eval_n": 16, "model.args.width": 4, "model.init": "he_fan_out",
                          "model.normalize": False, "adversary.start": "gaussian", "adversary.start_std": 0.001,
                          "train.augment": "rotate_flip", "train.lr_schedule.first_epoch": 1,
                          "adversary.steps": 2, "train.batch_size": 128})
    path = api.train("digits", "pgd_at", load_params(digits / "params.yaml"))
    model = load_checkpoint(path)
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(model.normalize(x), x)
    settings = checkpoint_info(path)["settings"]
    assert settings["model"]["init"] == "he_fan_out" and settings["model"]["normalize"] is False
    assert settings["adversary"]["start"] == "gaussian" and settings["data"]["augment"] == "rotate_flip"
    assert settings["train"]["lr_schedule"]["first_epoch"] == 1
