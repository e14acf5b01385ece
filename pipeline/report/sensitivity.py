"""Paper Table 8: OTJR's sensitivity to lambda_J, lambda_SW and K, from queued DVC experiments.

Reads `dvc exp show --json` (run now, or a saved copy): every committed or experiment
revision with OTJR results gives one row per dataset, with its lambda_j, lambda_sw,
num_projections and OTJR's clean / PGD-20 / PGD-100 / AutoAttack accuracy from
metrics/summary.json. Where dataset and model match the paper's setting (CIFAR-10,
WRN-34-10), the paper's row for the same hyper-parameters is shown beside ours.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Iterator

from ..core import paths
from ..core.errors import UserError
from ..core.io import read_json, write_json, write_text
from . import paper
from .aggregate import LABELS
from .tables import fmt, signed, table

HYPER = ("lambda_j", "lambda_sw", "num_projections")
SUMMARY = "metrics/summary.json"
RUN = "otjr"


def exp_show_json(cwd: Path) -> Any:
    """`dvc exp show --json` in the project root, parsed."""
    try:
        proc = subprocess.run(["dvc", "exp", "show", "--json"], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError("dvc: command not found (install the project, or pass --exp-json FILE)") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise UserError(f"dvc exp show --json failed: {lines[-1] if lines else proc.returncode}")
    return json.loads(proc.stdout)


def revisions(exp_show: Any) -> Iterator[dict[str, Any]]:
    """Every revision entry of `dvc exp show --json` output: commits and their experiments, the workspace last
    (so an experiment that `dvc exp run` also left in the workspace keeps its name)."""
    entries = exp_show if isinstance(exp_show, list) else []
    workspace = [e for e in entries if e.get("rev") == "workspace"]
    for entry in [e for e in entries if e.get("rev") != "workspace"] + workspace:
        yield entry
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                yield from revisions([rev])


def revision_name(rev: dict[str, Any]) -> str:
    name = rev.get("name") or str(rev.get("rev", ""))
    return name[:7] if len(name) == 40 and all(c in "0123456789abcdef" for c in name) else name


def number(value: Any) -> float | None:
    """A param as a float (DVC may write 1e-05, which YAML 1.1 readers keep as a string)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def rows_from(exp_show: Any) -> list[dict[str, Any]]:
    """One row per (revision, dataset) with OTJR results, de-duplicated on (dataset, settings, results)."""
    rows, seen = [], set()
    for rev in revisions(exp_show):
        data = rev.get("data") or {}
        if rev.get("error") or not data:
            continue
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        summary = ((data.get("metrics") or {}).get(SUMMARY) or {}).get("data") or {}
        for dataset, acc in (summary.get(RUN) or {}).items():
            row = {
                "rev": revision_name(rev),
                "dataset": dataset,
                "model": (params.get("model") or {}).get("name"),
                **{k: number(params.get(k)) for k in HYPER},
                "accuracy": {k: v for k, v in acc.items() if isinstance(v, (int, float))},
            }
            key = json.dumps({k: v for k, v in row.items() if k != "rev"}, sort_keys=True)
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return rows


def paper_row(row: dict[str, Any]) -> dict[str, float] | None:
    if (row["dataset"], row["model"]) != paper.SENSITIVITY_SETTING:
        return None
    for (lj, lsw, k), values in paper.SENSITIVITY.items():
        if (row["lambda_j"], row["lambda_sw"], row["num_projections"]) == (lj, lsw, k):
            return dict(zip(paper.SENSITIVITY_COLUMNS, values))
    return None


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["# Hyper-parameter sensitivity of OTJR (paper Table 8)", ""]
    if not rows:
        return "\n".join(lines + ["No experiment with OTJR results found in `dvc exp show`.", ""])
    for dataset in sorted({r["dataset"] for r in rows}):
        subset = sorted((r for r in rows if r["dataset"] == dataset),
                        key=lambda r: tuple(-1 if r[k] is None else r[k] for k in HYPER))
        cols = [c for c in paper.SENSITIVITY_COLUMNS + ("worst_case",) if any(c in r["accuracy"] for r in subset)]
        header = ["lambda_J", "lambda_SW", "K", "Model", "Experiment"] + [LABELS.get(c, c) for c in cols]
        body = []
        for r in subset:
            hyper = [f"{r[k]:g}" if r[k] is not None else "-" for k in HYPER]
            body.append(hyper + [r["model"] or "-", r["rev"]] + [fmt(r["accuracy"].get(c)) for c in cols])
            theirs = paper_row(r)
            if theirs:
                body.append(["", "", "", "", "paper, Table 8"] + [fmt(theirs.get(c)) for c in cols])
                body.append(["", "", "", "", "ours - paper"] + [
                    signed(r["accuracy"][c] - theirs[c]) if c in r["accuracy"] and c in theirs else "-" for c in cols])
        lines += [f"## {dataset}", ""] + table(header, body, right=5) + [""]
    return "\n".join(lines)


def sensitivity_report(exp_json: Path | None = None) -> str:
    """Write metrics/sensitivity.{json,md} from `dvc exp show --json` (or a saved copy); returns the markdown."""
    data = read_json(exp_json, what="dvc exp show JSON") if exp_json else exp_show_json(paths.root())
    rows = rows_from(data)
    text = markdown(rows)
    write_json(paths.sensitivity_result("json"), rows)
    write_text(paths.sensitivity_result("md"), text)
    return text
