"""data.train_n: a fixed, class-stratified subset of the training split (after the validation
hold-out), the same on every run; refused with one line when it asks for more than there is."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY, run_cli, write_params
from pipeline import api
from pipeline.core.errors import UserError
from pipeline.data import load_meta, load_split_uint8
from pipeline.data.split import stratified_subset


def test_subset_is_exact_stratified_sorted_and_deterministic():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)[torch.randperm(100, generator=torch.Generator().manual_seed(3))]
    a, b = stratified_subset(labels, 10, 7), stratified_subset(labels, 10, 7)
    assert torch.equal(a, b) and len(a) == 10 and torch.equal(a, torch.sort(a).values) and len(set(a.tolist())) == 10
    assert torch.bincount(labels[a], minlength=3).tolist() == [5, 3, 2]
    assert torch.bincount(labels[stratified_subset(labels, 11, 7)], minlength=3).tolist() == [6, 3, 2]  # largest remainder
    assert not torch.equal(a, stratified_subset(labels, 10, 8))
    assert torch.equal(stratified_subset(labels, 100, 7), torch.arange(100))


def test_preprocess_keeps_train_n_images_of_the_kept_split_and_leaves_val_and_test(digits):
    full = {s: load_split_uint8("digits", s) for s in ("train", "val", "test")}
    write_params(digits, {**TINY, "data.train_n": {"digits": 300}})
    api.preprocess("digits")
    x, y = load_split_uint8("digits", "train")
    assert len(y) == 300 and load_meta("digits")["sizes"]["train"] == 300
    assert load_meta("digits")["train_subset"]["n"] == 300
    rows = {bytes(img.flatten().tolist()) for img in full["train"][0]}
    assert all(bytes(img.flatten().tolist()) in rows for img in x)  # drawn from the training split only
    share_full = torch.bincount(full["train"][1], minlength=10).double() / len(full["train"][1])
    share = torch.bincount(y, minlength=10).double() / 300
    assert (share - share_full).abs().max() < 1 / 300 + 1e-9  # stratified: each class within one image
    for split in ("val", "test"):
        assert all(torch.equal(a, b) for a, b in zip(full[split], load_split_uint8("digits", split)))
    api.preprocess("digits")
    assert torch.equal(load_split_uint8("digits", "train")[0], x)  # deterministic


def test_train_n_larger_than_the_split_is_one_line(digits):
    write_params(digits, {**TINY, "data.train_n": {"digits": 10**6}})
    with pytest.raises(UserError, match=r"data\.train_n\.digits: 1000000 is more than the \d+ training images"):
        api.preprocess("digits")
    proc = run_cli("stage", "preprocess", "--dataset", "digits", cwd=digits)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "data.train_n.digits" in proc.stderr


@pytest.mark.parametrize("value", [{"digits": 0}, {"digits": -5}, {"digits": 1.5}, {"nosuch": 10}, 100])
def test_bad_train_n_values_are_one_line_naming_the_key(project, value):
    write_params(project, {**TINY, "data.train_n": value})
    proc = run_cli("stage", "preprocess", "--dataset", "digits", cwd=project)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "data.train_n" in proc.stderr, proc.stderr
