"""`otjr exp show`: DVC's experiments side by side, only the params that differ and the headline numbers.

Reads `dvc exp show --json`: each experiment's params.yaml and metrics/headline.json (written by the aggregate
stage). Prints one column per experiment and one row per differing param, then per run and dataset its clean,
PGD-20, AutoAttack and worst-case accuracy with the interval, and the sanity verdict; columns that would pass
`width` go to a further block below.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from .aggregate import HEADLINE

HEADLINE_FILE = "metrics/headline.json"
LABELS = {"clean": "clean", "pgd20": "PGD-20", "pgd100": "PGD-100", "autoattack": "AutoAttack",
          "worst_case": "worst case"}


@dataclass(frozen=True)
class Experiment:
    name: str
    params: dict[str, Any]  # dotted key -> value
    headline: dict[str, Any]  # run -> dataset -> measures


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _experiment(name: str, data: dict | None) -> Experiment:
    data = data or {}
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
    headline = ((data.get("metrics") or {}).get(HEADLINE_FILE) or {}).get("data") or {}
    return Experiment(name, _flat(params), headline)


def finished(exp: dict[str, Any]) -> bool:
    """Whether an experiment of `dvc exp show --json` has its own results: DVC lists a queued or running one
    with its own params but its baseline's metrics."""
    return (exp.get("executor") or {}).get("state") in (None, "success")


def parse(shown: list[dict]) -> list[Experiment]:
    """The baseline commits and their finished experiments of `dvc exp show --json`; the workspace where it
    differs."""
    found: list[Experiment] = []
    for entry in shown:
        rev = str(entry.get("rev", ""))
        name = entry.get("name") or (rev if rev == "workspace" else rev[:7])
        found.append(_experiment(name, entry.get("data")))
        for exp in filter(finished, entry.get("experiments") or []):
            for rev in exp.get("revs") or []:
                name = rev.get("name") or exp.get("name") or str(rev.get("rev"))[:7]
                found.append(_experiment(name, rev.get("data")))
    here = next((e for e in found if e.name == "workspace"), None)
    if here and any(e is not here and (e.params, e.headline) == (here.params, here.headline) for e in found):
        found.remove(here)  # the same as a commit or an experiment: shown once, under that name
    return found


def _cell(row: dict[str, Any], measure: str) -> str:
    if measure not in row:
        return "-"
    low, high = row.get(f"{measure}_low"), row.get(f"{measure}_high")
    if low is None or high is None:
        return f"{row[measure]:.1f}"
    return f"{row[measure]:.1f} [{low:.1f}, {high:.1f}]"


def _shown(value: Any) -> str:
    return "-" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def rows(experiments: list[Experiment]) -> list[tuple[str, list[str]]]:
    """(label, one cell per experiment): the params that differ, then each run's headline numbers."""
    out = [("experiment", [e.name for e in experiments])]
    keys = sorted({k for e in experiments for k in e.params})
    for key in keys:
        values = [_shown(e.params.get(key)) for e in experiments]
        if len(set(values)) > 1:
            out.append((key, values))
    pairs = list(dict.fromkeys((run, ds) for e in experiments for run, by_ds in e.headline.items() for ds in by_ds))
    for run, ds in pairs:
        cells = [e.headline.get(run, {}).get(ds, {}) for e in experiments]
        for measure in (m for m in HEADLINE if any(m in c for c in cells)):  # measured by some experiment
            out.append((f"{run}@{ds} {LABELS[measure]}", [_cell(c, measure) for c in cells]))
        out.append((f"{run}@{ds} sanity", [str(c.get("sanity", "-")) for c in cells]))
    return out


def table(experiments: list[Experiment], width: int = 120) -> str:
    """The rows as fixed-width text no wider than `width`: experiment columns in blocks that fit."""
    if not experiments:
        return "no experiments (run `dvc exp run`, or `dvc repro` and commit)\n"
    table_rows = rows(experiments)
    label_w = min(max(len(label) for label, _ in table_rows), width // 3)
    col_w = min(max(len(c) for _, cells in table_rows for c in cells), width - label_w - 2)
    per_block = max(1, (width - label_w) // (col_w + 2))
    blocks = []
    for start in range(0, len(experiments), per_block):
        lines = []
        for label, cells in table_rows:
            shown = [c if len(c) <= col_w else c[: col_w - 1] + "…" for c in cells[start:start + per_block]]
            text = label if len(label) <= label_w else label[: label_w - 1] + "…"
            lines.append((text.ljust(label_w) + "".join("  " + c.rjust(col_w) for c in shown)).rstrip())
        lines.insert(1, "-" * len(lines[0]))
        blocks.append("\n".join(lines))
    note = "accuracies in %, [95% interval]; params: only those that differ"
    return "\n\n".join(blocks) + "\n\n" + note + "\n"


def show(root: Path, width: int = 120) -> str:
    """`dvc exp show --json` in `root`, as `table`."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=root, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"dvc exp show failed in {root}: {last}")
    return table(parse(json.loads(proc.stdout)), width)
