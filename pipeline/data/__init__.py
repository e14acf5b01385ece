"""Datasets: a registry of sources, the download / preprocess steps, and `load_split`."""

from . import cifar, digits, imagenet100, intel, mnist  # noqa: F401  (registration)
from .prepare import download, has_split, load_meta, load_split, load_split_uint8, preprocess
from .registry import DATASETS, DatasetSpec, RawSplits, register

__all__ = [
    "DATASETS", "DatasetSpec", "RawSplits", "register",
    "download", "preprocess", "load_split", "load_split_uint8", "load_meta", "has_split",
]
