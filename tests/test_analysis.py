"""The paper's analyses on tiny models: shapes, independent reference computations, known properties."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import TINY, write_params
from pipeline.analysis.activations import channel_magnitudes, final_linear, penultimate_features
from pipeline.analysis.cross_section import decision_grid, grid_coordinates, plane
from pipeline.analysis.gradients import PGD, input_gradient_magnitude, layer_gradient_ratios, weight_layers
from pipeline.core.errors import UserError
from pipeline.models import MODELS, create

EPS, STEP = 0.2, 0.05


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """XE and PGD-AT small CNNs trained on the same digits data (a few epochs), and 64 test images."""
    from pipeline import api
    from pipeline.models.subject import load_for_dataset, test_subset

    root = tmp_path_factory.mktemp("analysis")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTJR_ROOT", str(root))
        write_params(root, {**TINY, "train.epochs": 4, "model.args.width": 16, "runs": ["xe", "pgd_at"],
                            "analysis.n": 48, "analysis.ratio_n": 8, "analysis.cross_section.resolution": 9})
        api.download("digits")
        api.preprocess("digits")
        models = {}
        for run in ("xe", "pgd_at"):
            api.train("digits", run)
            models[run] = load_for_dataset("digits", run)[0]
        x, y, _ = test_subset("digits", 64, torch.device("cpu"))
        yield {"root": root, "models": models, "x": x, "y": y}


def naive_input_gradient_magnitude(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean |d CE(f(x_i), y_i) / d x_i| over every example and input element, one example at a time, float64."""
    m = copy.deepcopy(model).double().eval()
    total, count = 0.0, 0
    for i in range(len(y)):
        xi = x[i : i + 1].double().clone().requires_grad_(True)
        loss = F.cross_entropy(m(xi), y[i : i + 1])
        (g,) = torch.autograd.grad(loss, xi)
        total += float(g.abs().sum())
        count += g.numel()
    return total / count


def test_input_gradient_magnitude_matches_a_per_example_loop(trained):
    model, x, y = trained["models"]["pgd_at"], trained["x"], trained["y"]
    pgd = PGD(EPS, STEP, random_start=True)
    ours = input_gradient_magnitude(model, x, y, pgd, [0, 5], batch_size=16, seed=3)
    assert ours[0] == pytest.approx(naive_input_gradient_magnitude(model, x, y), rel=1e-4)
    x5 = pgd(model, x, y, 5, batch_size=64, seed=3)  # re-seeded: the same PGD-5 points whatever the batching
    assert ours[1] == pytest.approx(naive_input_gradient_magnitude(model, x5, y), rel=1e-4)


def test_pgd_k_is_the_kth_iterate_and_stays_in_the_ball(trained):
    model, x, y = trained["models"]["xe"], trained["x"], trained["y"]
    pgd = PGD(EPS, STEP, random_start=False)
    assert torch.equal(pgd(model, x, y, 0, 64, 0), x)
    x1 = pgd(model, x, y, 1, 64, 0)
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
    assert torch.allclose(x1, (x + STEP * g.sign()).clamp(0, 1))
    x20 = pgd(model, x, y, 20, 64, 0)
    assert float((x20 - x).abs().max()) <= EPS + 1e-6 and 0 <= float(x20.min()) and float(x20.max()) <= 1


def test_xe_input_gradients_are_larger_than_pgd_at_ones(trained):
    """Paper Tables 5 and 12: adversarial training shrinks the input gradient, clean and under attack."""
    x, y = trained["x"], trained["y"]
    pgd = PGD(EPS, STEP, random_start=True)
    xe = input_gradient_magnitude(trained["models"]["xe"], x, y, pgd, [0, 5, 20], 64, 0)
    at = input_gradient_magnitude(trained["models"]["pgd_at"], x, y, pgd, [0, 5, 20], 64, 0)
    assert all(a > b for a, b in zip(xe, at)), (xe, at)
    assert xe[2] > xe[0]  # the attack climbs to where the loss is steep


def test_layer_ratios_match_per_sample_gradients_from_torch_func(trained):
    model, x, y = trained["models"]["xe"], trained["x"][:6], trained["y"][:6]
    x_adv = PGD(EPS, STEP, True)(model, x, y, 10, 64, 0)
    ours = layer_gradient_ratios(model, x, x_adv, y)
    assert list(ours) == weight_layers(model) and all(p.ndim >= 2 for n, p in model.named_parameters() if n in ours)

    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss(p, xi, yi):
        return F.cross_entropy(functional_call(model, (p, buffers), (xi[None],)), yi[None])

    per_clean = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    per_adv = vmap(grad(loss), in_dims=(None, 0, 0))(params, x_adv, y)
    for name, ratios in ours.items():
        expected = per_adv[name].flatten(1).norm(dim=1) / per_clean[name].flatten(1).norm(dim=1)
        assert ratios == pytest.approx(expected.tolist(), rel=1e-4)


def test_layer_ratios_are_one_when_nothing_is_perturbed(trained):
    model, x, y = trained["models"]["pgd_at"], trained["x"][:4], trained["y"][:4]
    flags = [p.requires_grad for p in model.parameters()]
    ratios = layer_gradient_ratios(model, x, x.clone(), y)
    assert all(r == pytest.approx(1.0) for rs in ratios.values() for r in rs)
    assert [p.requires_grad for p in model.parameters()] == flags and not model.training


@pytest.mark.parametrize("name", MODELS.names())
def test_penultimate_features_are_the_input_of_the_final_linear_layer(name):
    torch.manual_seed(0)
    model = create(name, num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3).eval()
    x = torch.rand(2, 3, 32, 32)
    feats = penultimate_features(model, x, batch_size=1)
    _, head = final_linear(model)
    assert feats.shape == (2, head.in_features)
    with torch.no_grad():
        assert torch.allclose(head(feats), model(x), atol=1e-5)


def test_channel_magnitudes_are_sorted_by_the_clean_magnitude(trained):
    model, x, y = trained["models"]["pgd_at"], trained["x"], trained["y"]
    x_adv = PGD(EPS, STEP, True)(model, x, y, 20, 64, 0)
    a = channel_magnitudes(model, x, x_adv, batch_size=16)
    assert a["channels"] == 32 and sorted(a["order"]) == list(range(32))  # width 16 -> 2*16 channels
    assert a["clean"] == sorted(a["clean"], reverse=True)
    expected_adv = penultimate_features(model, x_adv, 64).abs().mean(0)[a["order"]]
    assert a["adversarial"] == pytest.approx(expected_adv.tolist(), rel=1e-5)


def test_a_model_whose_last_layer_is_not_linear_is_refused():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh())
    with pytest.raises(UserError, match="not the model's last layer"):
        penultimate_features(model, torch.rand(2, 4), 2)


def test_plane_is_orthonormal_and_follows_the_adversarial_direction():
    g = torch.Generator().manual_seed(0)
    delta = torch.rand(1, 8, 8) - 0.5
    u, v = plane(delta, g)
    assert float(u.flatten().norm()) == pytest.approx(1.0) and float(v.flatten().norm()) == pytest.approx(1.0)
    assert abs(float((u * v).sum())) < 1e-10
    assert torch.allclose(u, (delta / delta.norm()).double())
    u0, v0 = plane(torch.zeros(1, 8, 8), torch.Generator().manual_seed(0))  # no perturbation: a random plane
    assert float(u0.norm()) == pytest.approx(1.0) and abs(float((u0 * v0).sum())) < 1e-10


def test_cross_section_centre_is_the_images_own_prediction(trained):
    model, x, y = trained["models"]["pgd_at"], trained["x"], trained["y"]
    coords = grid_coordinates(3.0, 7)
    assert coords[3] == 0 and coords[0] == -3.0 and coords[-1] == 3.0
    x_adv = PGD(EPS, STEP, True)(model, x[:5], y[:5], 20, 64, 0)
    for i in range(5):
        u, v = plane(x_adv[i] - x[i], torch.Generator().manual_seed(i))
        grid = decision_grid(model, x[i], u.float(), v.float(), coords, 64)
        assert grid.shape == (7, 7)
        with torch.no_grad():
            assert int(grid[3, 3]) == int(model(x[i : i + 1]).argmax())
            for r, c in [(0, 6), (5, 1), (2, 4)]:  # row follows v, column follows u
                point = (x[i].double() + coords[c] * u + coords[r] * v).float()
                assert int(grid[r, c]) == int(model(point[None]).argmax())


def test_analyze_stage_writes_every_analysis_for_every_run(trained):
    from pipeline import api
    from pipeline.core import paths

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTJR_ROOT", str(trained["root"]))
        out = api.analyze("digits")
        assert out == paths.analysis_result("digits")
    data = json.loads(out.read_text())
    assert data["n"] == 48 and data["num_classes"] == 10 and set(data["runs"]) == {"xe", "pgd_at"}
    assert len(data["cross_section_coordinates"]) == 9
    images = None
    for run, r in data["runs"].items():
        assert r["training"]["model"] == "small_cnn" and r["training"]["epochs"] == 4
        assert "seconds_per_epoch" not in r["training"]  # wall times: core.timing, beside the results
        assert r["input_gradient"]["steps"] == [0, 1, 5, 10, 15, 20] and len(r["input_gradient"]["mean_abs"]) == 6
        assert r["activations"]["channels"] == 32 and len(r["activations"]["clean"]) == 32
        assert r["layer_ratios"]["n"] == 8 and len(r["layer_ratios"]["mean"]) == len(r["layer_ratios"]["layers"]) == 4
        assert len(r["cross_sections"]) == 3
        for s in r["cross_sections"]:
            assert len(s["grid"]) == 9 and all(len(row) == 9 for row in s["grid"])
            assert s["grid"][4][4] == s["prediction"] == s["label"]  # images every run classifies correctly
        assert images in (None, [s["image"] for s in r["cross_sections"]])  # the same images for every run
        images = [s["image"] for s in r["cross_sections"]]
    xe, at = data["runs"]["xe"], data["runs"]["pgd_at"]
    assert xe["input_gradient"]["mean_abs"][-1] > at["input_gradient"]["mean_abs"][-1]
