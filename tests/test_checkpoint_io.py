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
