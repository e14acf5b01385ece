"""The embedded default dataset: download, preprocess and load_split."""

import torch

from pipeline.core import paths
from pipeline.data import load_meta, load_split


def test_digits_splits_are_complete_and_in_range(digits):
    sizes = {}
    for split in ("train", "val", "test"):
        x, y = load_split("digits", split)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (1, 8, 8)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert set(y.tolist()) == set(range(10))
        sizes[split] = len(y)
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == 450  # fixed stratified 25%
    meta = load_meta("digits")
    assert meta["num_classes"] == 10 and len(meta["mean"]) == 1
    assert meta["sizes"] == sizes


def test_preprocess_is_deterministic(digits):
    from pipeline import api

    before = {s: paths.prepared_split("digits", s).read_bytes() for s in ("train", "val", "test")}
    api.preprocess("digits")
    after = {s: paths.prepared_split("digits", s).read_bytes() for s in ("train", "val", "test")}
    assert before == after
