"""Every file location of the pipeline, in one place.

Paths are relative to the project root: the directory holding params.yaml and dvc.yaml,
which is the working directory under DVC (or $OTJR_ROOT when set).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_further_seed: list[int | None] = [None]  # set by `seed_scope`: None is `seed`, the first seed of every run


@contextmanager
def seed_scope(seed: int | None) -> Iterator[None]:
    """Within: every per-run file (checkpoint, logs, records, locks) is that of further seed `seed`.

    None (the default) is the first seed, `seed` in params.yaml, whose files keep the plain layout;
    a further seed's live beside them under `<dataset>.seed<seed>/` (see `run_folder`).
    """
    before, _further_seed[0] = _further_seed[0], seed
    try:
        yield
    finally:
        _further_seed[0] = before


def run_folder(dataset: str) -> str:
    """The folder of `dataset`'s per-run files: `<dataset>`, or `<dataset>.seed<s>` inside `seed_scope(s)`."""
    seed = _further_seed[0]
    return dataset if seed is None else f"{dataset}.seed{seed}"


def root() -> Path:
    return Path(os.environ.get("OTJR_ROOT", ".")).resolve()


def params_file() -> Path:
    return root() / "params.yaml"


def timing_dir() -> Path:
    """Wall times and hosts (`core.timing`), and the report's training-time section: git-ignored, no DVC output."""
    return root() / "metrics" / "timing"


def timing(stage: str, dataset: str, run: str) -> Path:
    return timing_dir() / stage / run_folder(dataset) / f"{run}.json"


def params_check() -> Path:
    """The `params` stage's output: the same text whenever params.yaml is valid (see `api.check_params`)."""
    return root() / "metrics" / "params.ok"


def work_dir() -> Path:
    """The pipeline's own bookkeeping (locks, training results being written); never versioned."""
    return root() / ".otjr"


def lock_file(stage: str, dataset: str, run: str) -> Path:
    """The lock one `stage` process holds on (dataset, run) while it runs."""
    return work_dir() / "locks" / f"{stage}.{run_folder(dataset)}.{run}.lock"


def train_staging(dataset: str, run: str) -> Path:
    """Where a training run writes its logs (and, at the end, its checkpoint) before they replace the tracked ones."""
    return work_dir() / "staging" / "train" / run_folder(dataset) / run


def train_commit(dataset: str, run: str) -> Path:
    """A finished training's staging folder once complete: moved into place, also by the next run if killed midway."""
    return work_dir() / "commit" / "train" / run_folder(dataset) / run


# data -------------------------------------------------------------------------------------
def raw_dir(dataset: str) -> Path:
    """What the download stage produces: the dataset's files as published."""
    return root() / "data" / "raw" / dataset


def prepared_dir(dataset: str) -> Path:
    """What the preprocess stage produces: uint8 tensors in safetensors, one file per split."""
    return root() / "data" / "prepared" / dataset


def prepared_split(dataset: str, split: str) -> Path:
    """A prepared split's first (often only) shard; its metadata says how many follow."""
    return prepared_dir(dataset) / f"{split}.safetensors"


def prepared_shard(dataset: str, split: str, index: int) -> Path:
    """Shard `index` of a prepared split (0 is `prepared_split`)."""
    return prepared_split(dataset, split) if index == 0 else prepared_dir(dataset) / f"{split}.{index}.safetensors"


def download_cache() -> Path:
    """Archives being downloaded: outside DVC's outputs, so a partial download survives to be resumed."""
    return root() / "data" / "downloads"


# models -----------------------------------------------------------------------------------
def checkpoint(dataset: str, run: str) -> Path:
    """The trained model of `run` (a method, optionally with add-ons) on `dataset`."""
    return root() / "models" / run_folder(dataset) / f"{run}.safetensors"


def resume_state(dataset: str, run: str) -> Path:
    """Last finished epoch of an unfinished training run (not a DVC output, so DVC keeps it)."""
    return root() / "models" / run_folder(dataset) / f"{run}.resume.safetensors"


# metrics ----------------------------------------------------------------------------------
def train_log_dir(dataset: str, run: str) -> Path:
    """dvclive directory of a training run: metrics.json and per-epoch plots."""
    return root() / "metrics" / "train" / run_folder(dataset) / run


def attack_result(dataset: str, run: str) -> Path:
    """One JSON record per model: accuracy under every attack, with n, seeds and versions."""
    return root() / "metrics" / "attacks" / run_folder(dataset) / f"{run}.json"


def attack_flags(dataset: str, run: str) -> Path:
    """Per-example robust flags of every attack (safetensors), for the worst case and sanity checks."""
    return root() / "metrics" / "attacks" / run_folder(dataset) / f"{run}.flags.safetensors"


def sanity_result(dataset: str, run: str) -> Path:
    return root() / "metrics" / "sanity" / run_folder(dataset) / f"{run}.json"


def summary_json() -> Path:
    return root() / "metrics" / "summary.json"


def summary_stats_json() -> Path:
    """Intervals of every accuracy and the claims' paired tests, beside summary.json (whose schema stays flat)."""
    return root() / "metrics" / "summary_stats.json"


def headline_json() -> Path:
    """What DVC counts as metrics: each run's headline accuracies, intervals and sanity verdict."""
    return root() / "metrics" / "headline.json"


def summary_md() -> Path:
    return root() / "metrics" / "summary.md"


# analyses and report ----------------------------------------------------------------------
def analysis_result(dataset: str) -> Path:
    """The paper's analyses (gradients, activations, cross-sections) of every run on `dataset`."""
    return root() / "metrics" / "analysis" / f"{dataset}.json"


def external_analysis(dataset: str, run: str) -> Path:
    """The analyses of a model evaluated with `otjr evaluate` (one file per model, beside the dataset's)."""
    return root() / "metrics" / "analysis" / dataset / f"{run}.json"


def robustbench_export(dataset: str, threat_model: str, run: str) -> Path:
    """A run's results in RobustBench's model-info format, laid out as RobustBench's model_info/ folder."""
    return root() / "metrics" / "robustbench" / dataset / threat_model / f"{run}.json"


def report_dir() -> Path:
    """The report stage's output: report.md and figures/ (DVC-cached)."""
    return root() / "metrics" / "report"


def report_plots_dir() -> Path:
    """Data files behind `dvc plots show` / `dvc plots diff` (small, kept in git)."""
    return root() / "metrics" / "plots"


def sensitivity_result(suffix: str) -> Path:
    """Hyper-parameter sensitivity table (paper Table 8) built from `dvc exp show`: .json or .md."""
    return root() / "metrics" / f"sensitivity.{suffix}"
