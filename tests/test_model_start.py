"""How a model starts: He fan-out init per layer against its formula, normalisation off is the
identity, and ImageNet weights load from a hash-checked local file (wrong hash, wrong shape or a
pickled object refused with one line)."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
from scipy import stats
from torch import nn

from pipeline.core.errors import UserError
from pipeline.models import build, create, load_checkpoint, save_checkpoint
from pipeline.models.init import initial_model, training_spec
from pipeline.params import ModelParams, PretrainedParams

#: every registered architecture, shrunk so a test builds it in milliseconds
SMALL = {
    "small_cnn": {"width": 8},
    "wrn34_10": {"depth": 10, "widen": 2},
    "wrn28_10": {"depth": 10, "widen": 2},
    "preact_resnet18": {"width": 8, "depth": 10},
    "resnet50": {"width": 8, "depth": 14},
}
META = {"shape": [3, 16, 16], "num_classes": 10, "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}


def _model(name: str, **settings) -> nn.Module:
    params = ModelParams(name=name, args=SMALL[name], **settings)
    return initial_model(training_spec(params, META), params)


def test_every_architecture_is_covered():
    from pipeline.models import MODELS

    assert set(MODELS.names()) >= set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_he_fan_out_matches_its_formula_layer_by_layer(name):
    """Conv weights N(0, 2/(k_h*k_w*out)): sample mean and std within 5 standard errors, and a KS test."""
    torch.manual_seed(0)
    model = _model(name, init="he_fan_out")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs
    for conv in convs:
        w = conv.weight.detach().double().flatten()
        n = w.numel()
        sigma = math.sqrt(2.0 / (conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels))
        assert abs(w.mean().item()) < 5 * sigma / math.sqrt(n)
        assert abs(w.std().item() / sigma - 1) < 5 / math.sqrt(2 * (n - 1))
        if n >= 200:
            assert stats.kstest(w.numpy(), stats.norm(0, sigma).cdf).pvalue > 1e-4
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
        if isinstance(m, nn.Linear):
            assert torch.all(m.bias == 0)


def test_default_init_is_the_architectures_own():
    """`default` draws no random numbers: the same weights as building the architecture directly.

    PyTorch's conv default (kaiming uniform, a=sqrt(5)) has std 1/sqrt(3*fan_in); the WRN review
    figure: 0.0152 for a 3x3 conv from 160 channels, against He fan-out's 0.0373 for 160 out."""
    torch.manual_seed(1)
    ours = _model("wrn34_10")
    torch.manual_seed(1)
    direct = create("wrn34_10", num_classes=10, in_channels=3, **SMALL["wrn34_10"])
    assert all(torch.equal(a, b) for a, b in zip(ours.net.state_dict().values(), direct.net.state_dict().values()))
    conv = ours.net.blocks[1].conv2
    fan_in = conv.in_channels * 9
    w = conv.weight.detach().double()
    assert w.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.1)
    assert round(1 / math.sqrt(3 * 160 * 9), 4) == 0.0152 and round(math.sqrt(2 / (9 * 160)), 4) == 0.0373


@pytest.mark.parametrize("name", sorted(SMALL))
def test_normalisation_off_is_the_identity(name):
    torch.manual_seed(0)
    model = _model(name, normalize=False).eval()
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(model.normalize(x), x)
    with torch.no_grad():
        assert torch.equal(model(x), model.net(x))


def test_normalisation_on_standardises_by_the_training_statistics():
    model = _model("small_cnn").eval()
    x = torch.rand(2, 3, 8, 8)
    mean, std = torch.tensor(META["mean"]).view(1, 3, 1, 1), torch.tensor(META["std"]).view(1, 3, 1, 1)
    assert torch.allclose(model.normalize(x), (x - mean) / std)


def test_checkpoint_keeps_the_normalisation_off(tmp_path):
    params = ModelParams(name="small_cnn", args=SMALL["small_cnn"], normalize=False)
    spec = training_spec(params, META)
    assert spec["mean"] == [0.0] * 3 and spec["std"] == [1.0] * 3
    model = initial_model(spec, params)
    save_checkpoint(tmp_path / "m.safetensors", model, spec, {})
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    x = torch.rand(3, 3, 8, 8)
    assert torch.equal(loaded.normalize(x), x)


# ---- pretrained weights ----------------------------------------------------------------

def test_resnet50_tensors_are_named_and_shaped_as_torchvisions():
    import torchvision

    with torch.device("meta"):
        theirs = torchvision.models.resnet50().state_dict()
        ours = create("resnet50", num_classes=1000, imagenet_stem=True).net.state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def _weights_file(tmp_path, imagenet_stem=True):
    """A torchvision-format state dict (1000-class head) of a small ResNet, saved with torch.save."""
    torch.manual_seed(7)
    source = create("resnet50", num_classes=1000, imagenet_stem=imagenet_stem, **SMALL["resnet50"]).net
    for m in source.modules():  # running statistics unlike a fresh model's
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
    path = tmp_path / "resnet.pth"
    torch.save(source.state_dict(), path)
    return source.state_dict(), path, hashlib.sha256(path.read_bytes()).hexdigest()


def _pretrained(path, sha256, imagenet_stem=True):
    params = ModelParams(name="resnet50", args={**SMALL["resnet50"], "imagenet_stem": imagenet_stem},
                         pretrained=PretrainedParams(weights="IMAGENET1K_V1", file=str(path), sha256=sha256))
    meta = {**META, "num_classes": 6}
    return initial_model(training_spec(params, meta), params)


def test_local_weights_load_everything_but_the_head(tmp_path):
    source, path, sha = _weights_file(tmp_path)
    model = _pretrained(path, sha)
    got = model.net.state_dict()
    for key, value in source.items():
        if key.startswith("fc."):
            continue
        assert torch.equal(got[key], value), key
    assert got["fc.weight"].shape == (6, source["fc.weight"].shape[1])
    assert got["fc.bias"].shape == (6,)


def test_wrong_hash_is_refused(tmp_path):
    _, path, sha = _weights_file(tmp_path)
    wrong = ("0" if sha[0] != "0" else "1") + sha[1:]
    with pytest.raises(UserError, match="does not match model.pretrained.sha256") as err:
        _pretrained(path, wrong)
    assert "\n" not in str(err.value)


def test_weights_of_another_shape_are_refused_by_name(tmp_path):
    _, path, sha = _weights_file(tmp_path, imagenet_stem=True)
    with pytest.raises(UserError, match="conv1.weight"):
        _pretrained(path, sha, imagenet_stem=False)


class Payload:  # a pickled object in a weights file must never be instantiated
    pass


def test_a_pickled_object_is_not_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": Payload()}, path)
    with pytest.raises(UserError, match="not a plain tensor state dict"):
        _pretrained(path, hashlib.sha256(path.read_bytes()).hexdigest())


def test_a_corrupt_torchvision_cache_file_is_refused(tmp_path, monkeypatch):
    """The cached download is checked against the sha256 prefix in torchvision's file name (no network)."""
    from pipeline.models.pretrained import torchvision_file

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    import torchvision

    name = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / name).write_bytes(b"not the weights")
    with pytest.raises(UserError, match="does not start with"):
        torchvision_file("resnet50", "IMAGENET1K_V1")


def test_pretrained_settings_are_validated():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="sha256"):
        PretrainedParams(weights="IMAGENET1K_V1", file="w.pth")
    with pytest.raises(UserError, match="no ImageNet weights for model 'wrn34_10'"):
        params = ModelParams(name="wrn34_10", args=SMALL["wrn34_10"], pretrained=PretrainedParams(weights="IMAGENET1K_V1"))
        initial_model(training_spec(params, META), params)
    with pytest.raises(UserError, match="IMAGENET1K_V1"):
        params = ModelParams(name="resnet50", args=SMALL["resnet50"], pretrained=PretrainedParams(weights="V9"))
        initial_model(training_spec(params, META), params)
