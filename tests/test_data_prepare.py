"""Preprocess internals: resize rule, per-channel statistics, sharding, partial loads, and the two
training-batch feeders (on the device / streamed by workers) giving identical batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import api
from pipeline.core import paths
from pipeline.data import load_meta, load_split, load_split_uint8, prepare
from pipeline.data.images import TensorSplit, to_square
from pipeline.train import batches as feed


def test_resize_takes_the_centre_of_the_shorter_side():
    # 80x20: red, green from column 20 to 60, red; the centre 20x20 after scaling is all green
    arr = np.zeros((20, 80, 3), dtype=np.uint8)
    arr[:, :, 0] = 255
    arr[:, 20:60] = (0, 255, 0)
    out = np.asarray(to_square(Image.fromarray(arr), 10))
    assert out.shape == (10, 10, 3)
    assert (out[..., 1] > 250).all() and (out[..., 0] < 5).all()
    tall = np.asarray(to_square(Image.fromarray(arr.transpose(1, 0, 2).copy()), 10))
    assert (tall[..., 1] > 250).all()


def test_stretch_resize_is_torchvisions_square_resize():
    """The `stretch` rule (Intel preset) squashes the whole image as torchvision's Resize((s, s)), JPEGs fully decoded."""
    import io

    from torchvision import transforms

    from pipeline.data.images import decode_square

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (150, 113, 3), dtype=np.uint8)  # Intel has a few non-square images
    image = Image.fromarray(arr)
    ours = np.asarray(to_square(image, 32, "stretch"))
    assert np.array_equal(ours, np.asarray(transforms.Resize((32, 32))(image)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    reference = np.asarray(transforms.Resize((32, 32))(Image.open(io.BytesIO(data)).convert("RGB")))
    assert np.array_equal(decode_square(data, 32, "test.jpg", "stretch"), reference)
    # the crop rule keeps only the centre of the longer side
    marked = arr.copy()
    marked[:20] = 0
    assert not (np.asarray(to_square(Image.fromarray(marked), 32)) < 5).all(axis=2)[:2].all()
    assert (np.asarray(to_square(Image.fromarray(marked), 32, "stretch")) < 5).all(axis=2)[:2].all()


def test_tensor_split_resizes_grey_and_colour_and_passes_native_through():
    grey = torch.full((2, 1, 8, 8), 77, dtype=torch.uint8)
    assert torch.equal(TensorSplit(grey, torch.zeros(2)).load(torch.arange(2), 8), grey)
    big = TensorSplit(grey, torch.zeros(2)).load(torch.arange(2), 16)
    assert big.shape == (2, 1, 16, 16) and (big == 77).all()
    colour = torch.randint(0, 256, (3, 3, 12, 12), dtype=torch.uint8)
    assert TensorSplit(colour, torch.zeros(3)).load(torch.tensor([2, 0]), 6).shape == (2, 3, 6, 6)


def _naive_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and unbiased std with explicit loops in float64 (no torch reductions)."""
    x = images.numpy().astype(np.float64) / 255
    means, stds = [], []
    for c in range(x.shape[1]):
        values = [float(v) for v in x[:, c].ravel()]
        m = sum(values) / len(values)
        means.append(m)
        stds.append((sum((v - m) ** 2 for v in values) / (len(values) - 1)) ** 0.5)
    return means, stds


def test_sharded_preprocess_matches_single_shard_and_naive_stats(digits, monkeypatch):
    single = {s: load_split_uint8("digits", s) for s in ("train", "val", "test")}
    meta1 = load_meta("digits")
    monkeypatch.setattr(prepare, "SHARD_BYTES", 64 * 100)  # 100 digits per shard
    monkeypatch.setattr(prepare, "STATS_VALUES", 64 * 37)  # statistics combined from pieces of 37 images
    api.preprocess("digits")
    meta = load_meta("digits")
    assert meta["shards"] == {"train": 13, "test": 5, "val": 2}
    assert paths.prepared_shard("digits", "train", 12).is_file()
    for split, (x, y) in single.items():
        x2, y2 = load_split_uint8("digits", split)
        assert torch.equal(x, x2) and torch.equal(y, y2)
    means, stds = _naive_stats(single["train"][0])
    assert meta["mean"] == pytest.approx(means, abs=1e-12) and meta["std"] == pytest.approx(stds, abs=1e-12)
    assert meta1["mean"] == pytest.approx(means, abs=1e-12) and meta1["std"] == pytest.approx(stds, abs=1e-12)
    # partial loads read only the first rows, across shard boundaries
    x, y = load_split("digits", "test", limit=130)
    assert torch.equal(y, single["test"][1][:130]) and torch.equal((x * 255).round().byte(), single["test"][0][:130])
    # a new preprocess leaves no stale shards behind
    monkeypatch.setattr(prepare, "SHARD_BYTES", 1 << 30)
    api.preprocess("digits")
    assert sorted(p.name for p in paths.prepared_dir("digits").iterdir()) == [
        "test.safetensors", "train.safetensors", "val.safetensors"]


def _collect(batches, seed, epochs=2):
    out = []
    for epoch in range(epochs):
        torch.manual_seed(99)
        out += [(x.clone(), y.clone()) for x, y in batches.epoch(seed, epoch)]
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_and_on_device_batches_are_identical(digits, monkeypatch, workers):
    monkeypatch.setattr(prepare, "SHARD_BYTES", 64 * 150)
    api.preprocess("digits")
    device = torch.device("cpu")
    on_device = feed.training_batches("digits", device, 50, "crop_flip", "device", workers)
    streamed = feed.training_batches("digits", device, 50, "crop_flip", "stream", workers)
    assert isinstance(on_device, feed.Batches) and isinstance(streamed, feed.StreamingBatches)
    a, b = _collect(on_device, seed=3), _collect(streamed, seed=3)
    n = len(load_split_uint8("digits", "train")[1])
    assert len(a) == len(b) == 2 * (n // 50)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # one epoch visits distinct rows; the next epoch is a different order
    first = torch.cat([y for _, y in a[: n // 50]])
    assert len(first) == 50 * (n // 50)
    assert not torch.equal(a[0][1], a[n // 50][1])


def test_auto_keeps_the_split_on_the_device_only_when_it_fits(digits, monkeypatch):
    monkeypatch.setattr(feed, "available_bytes", lambda device: 10**12)
    assert isinstance(feed.training_batches("digits", torch.device("cpu"), 32, "none", "auto", 0), feed.Batches)
    monkeypatch.setattr(feed, "available_bytes", lambda device: 1000)
    assert isinstance(feed.training_batches("digits", torch.device("cpu"), 32, "none", "auto", 0), feed.StreamingBatches)
