"""The one reader of the pipeline's result files: attack and sanity records (per seed), per-example flags,
analyses and training curves. Everything in `report` reads them through here."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable, Sequence

from ..core import paths
from ..core.io import load_tensors, read_json


def read_optional(path: Path, what: str) -> dict[str, Any] | None:
    """The JSON file at `path`, or None when it does not exist (a malformed one is one clear error)."""
    return read_json(path, what=what) if path.is_file() else None


def seed_records(seeds: Sequence[int], path: Callable[[], Path], what: str) -> list[dict]:
    """The record at `path()` of every seed: `seed`'s (plain layout), then each further seed's (required)."""
    out = []
    for seed in (None, *seeds):
        with paths.seed_scope(seed):
            out.append(read_json(path(), what=what + ("" if seed is None else f" of seed {seed}")))
    return out


def accuracies(record: dict[str, Any]) -> dict[str, float]:
    """attack -> accuracy (percent, 2 decimals) for every entry of a result record."""
    return {k: round(v["accuracy"], 2) for k, v in record.items() if isinstance(v, dict) and "accuracy" in v}


def load_flags(dataset: str, run: str, further_seeds: Sequence[int] = ()) -> list[dict[str, list[bool]]] | None:
    """The attack stage's per-example flags of a run, one dict per seed: `seed`'s, then each further seed's
    (None when any of them is not evaluated)."""
    out = []
    for seed in (None, *further_seeds):
        with paths.seed_scope(seed):
            path = paths.attack_flags(dataset, run)
        if not path.is_file():
            return None
        tensors, _ = load_tensors(path, what="attack flags")
        out.append({k: v.bool().tolist() for k, v in tensors.items()})
    return out


def read_dvclive(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{'train/loss': [(epoch, value), ...], ...} from a dvclive directory's plots/metrics/**.tsv (epoch = step + 1)."""
    root = log_dir / "plots" / "metrics"
    curves: dict[str, list[tuple[int, float]]] = {}
    for tsv in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        name = tsv.relative_to(root).with_suffix("").as_posix()
        with open(tsv, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        value_key = Path(name).name
        points = [(int(r["step"]) + 1, float(r[value_key])) for r in rows if r.get(value_key) not in (None, "")]
        if points:
            curves[name] = points
    return curves
