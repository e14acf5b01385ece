"""Checkpoints rebuild the model from the file alone; artifacts are written atomically."""

from __future__ import annotations

import pytest
import torch

from pipeline.core.errors import UserError
from pipeline.core.io import atomic_path, load_tensors, save_tensors, write_json
from pipeline.models import build, checkpoint_info, load_checkpoint, model_spec, save_checkpoint


@pytest.mark.parametrize("name, args, shape", [("small_cnn", {"width": 4}, (1, 8, 8)),
                                               ("preact_resnet18", {"width": 4}, (3, 16, 16))])
def test_checkpoint_round_trip_in_eval_mode(tmp_path, name, args, shape):
    spec = model_spec(name, args, num_classes=7, in_channels=shape[0], mean=[0.3] * shape[0], std=[0.2] * shape[0])
    torch.manual_seed(0)
    model = build(spec)
    model.train()
    x = torch.rand(5, *shape)
    model(x)  # move BN running statistics away from their defaults
    model.eval()
    expected = model(x)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, spec, {"dataset": "digits", "run": "otjr", "settings": {"seed": 3}})
    loaded = load_checkpoint(path)
    assert not loaded.training
    assert torch.equal(loaded(x), expected)
    info = checkpoint_info(path)
    assert info["model"] == spec and info["run"] == "otjr" and info["settings"] == {"seed": 3}


def test_same_content_gives_identical_bytes(tmp_path):
    tensors = {"b": torch.arange(5.0), "a": torch.ones(2, 2)}
    meta = {"z": 1, "a": {"k": [1, 2]}, "m": "x"}
    save_tensors(tmp_path / "1.safetensors", tensors, meta)
    save_tensors(tmp_path / "2.safetensors", dict(reversed(list(tensors.items()))), dict(reversed(list(meta.items()))))
    assert (tmp_path / "1.safetensors").read_bytes() == (tmp_path / "2.safetensors").read_bytes()
    loaded, loaded_meta = load_tensors(tmp_path / "1.safetensors")
    assert loaded_meta == meta and torch.equal(loaded["b"], tensors["b"])


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out" / "result.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    write_json(target, {"ok": 1})
    assert target.read_text().strip().startswith("{") and list(target.parent.iterdir()) == [target]


def test_missing_checkpoint_is_one_line(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("value, word", [(float("nan"), "NaN"), (float("inf"), "infinite")])
def test_non_finite_weights_are_refused_at_load_naming_the_tensor(tmp_path, value, word):
    spec = model_spec("small_cnn", {"width": 4}, num_classes=3, in_channels=1, mean=[0.5], std=[0.2])
    model = build(spec)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, spec, {})
    tensors, meta = load_tensors(path)
    name = sorted(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)[-1]
    tensors[name].view(-1)[1] = value
    save_tensors(path, tensors, meta)
    with pytest.raises(UserError, match=f"weights not finite: tensor '{name}' holds {word} values"):
        load_checkpoint(path)


def test_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    path = tmp_path / "m.safetensors"
    save_tensors(path, {"a": torch.ones(3)}, {"v": 1})
    before = path.read_bytes()

    def full(tensors, filename, metadata=None):  # what safetensors raises when the disk fills mid-write
        with open(filename, "wb") as f:
            f.write(b"\0" * 10)
        raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(UserError, match="m.safetensors: cannot be written: no space left on device"):
        save_tensors(path, {"a": torch.zeros(3)}, {"v": 2})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_a_full_disk_outside_the_atomic_writers_is_one_line_exit_2(capsys):
    import errno
    import os

    import typer

    from stages._cli import one_line_errors

    @one_line_errors
    def stage() -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "metrics/train/digits/xe/metrics.json")

    with pytest.raises(typer.Exit) as exit_:
        stage()
    assert exit_.value.exit_code == 2
    assert capsys.readouterr().err == ("error: metrics/train/digits/xe/metrics.json: cannot be written: no space left "
                                       "on device; free some and re-run\n")
