"""Datasets: a registry of sources, the download / preprocess steps, and `load_split`."""

from . import digits  # noqa: F401  (registers the embedded default)
from .prepare import download, has_split, load_meta, load_split, preprocess
from .registry import DATASETS, DatasetSpec, RawSplits, register

__all__ = ["DATASETS", "DatasetSpec", "RawSplits", "register", "download", "preprocess", "load_split", "load_meta", "has_split"]
