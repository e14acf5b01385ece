"""`eval_split: val`: attack, sanity and analysis on the held-out validation images, for choosing hyper-parameters."""

from __future__ import annotations

import pytest
import torch

from conftest import write_params
from pipeline.config import load_params
from pipeline.core.errors import UserError


def test_split_val_needs_a_validation_split(tmp_path):
    write_params(tmp_path, {"eval_split": "val", "data.val_fraction": 0})
    with pytest.raises(UserError, match=r"'eval_split': val needs a validation split; set data\.val_fraction"):
        load_params(tmp_path / "params.yaml")
    write_params(tmp_path, {"eval_split": "train"})
    with pytest.raises(UserError, match=r"eval_split"):
        load_params(tmp_path / "params.yaml")
    write_params(tmp_path, {})
    assert load_params(tmp_path / "params.yaml").eval_split == "test"


def test_attack_and_sanity_on_the_validation_split_read_its_first_images(digits):
    from pipeline import api
    from pipeline.core import paths
    from pipeline.core.io import load_tensors, read_json
    from pipeline.data import load_split
    from pipeline.models.subject import load_for_dataset

    write_params(digits, {"attack.n": 24, "attack.suite": ["fgsm"], "train.epochs": 1, "train.eval_n": 16,
                          "model.args.width": 8, "eval_split": "val", "sanity.n": 16})
    api.train("digits", "xe")
    record = read_json(api.attack("digits", "xe"))
    flags, meta = load_tensors(paths.attack_flags("digits", "xe"))
    assert record["subset"] == meta["subset"] == "first 24 images of the digits val split"
    assert "first n val images" in record["evaluation"]["note"]

    # the clean flags are the model's own verdicts on the validation split's first 24 images, not the test split's
    model = load_for_dataset("digits", "xe")[0].eval()
    x, y = load_split("digits", "val")
    with torch.no_grad():
        expected = model(x[:24]).argmax(1) == y[:24]
    assert torch.equal(flags["clean"], expected)
    xt, yt = load_split("digits", "test")
    assert not torch.equal(x[:24], xt[:24])
    assert record["clean"]["accuracy"] == pytest.approx(100.0 * expected.sum().item() / 24)

    sanity_path, _ = api.sanity("digits", "xe")
    assert read_json(sanity_path)["subset"] == "first 16 images of the digits val split"
