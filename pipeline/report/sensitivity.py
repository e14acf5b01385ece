"""Paper Table 8: OTJR's sensitivity to lambda_J, lambda_SW and K, from queued DVC experiments.

Reads `dvc exp show --json` (run now, or a saved copy): every committed or experiment
revision with OTJR results gives one row per dataset, with its lambda_j, lambda_sw,
num_projections and OTJR's clean / PGD-20 / PGD-100 / AutoAttack accuracy and 95% interval
from metrics/headline.json (the metrics file DVC reports), grouped by the split attacked
(`eval_split`). On the validation split the table names the setting it picks: the highest
AutoAttack accuracy, ties to the higher clean accuracy. Where dataset and model match the
paper's setting (CIFAR-10, WRN-34-10), the paper's row for the same hyper-parameters is shown.
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
from .experiments import finished
from .tables import fmt, signed, table

HYPER = ("lambda_j", "lambda_sw", "num_projections")
HEADLINE = "metrics/headline.json"
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
    """Every revision entry of `dvc exp show --json` output: commits and their finished experiments, the
    workspace last (so an experiment that `dvc exp run` also left in the workspace keeps its name). A queued or
    running experiment is left out (`experiments.finished`)."""
    entries = exp_show if isinstance(exp_show, list) else []
    workspace = [e for e in entries if e.get("rev") == "workspace"]
    for entry in [e for e in entries if e.get("rev") != "workspace"] + workspace:
        yield entry
        for exp in entry.get("experiments") or []:
            if not finished(exp):
                continue
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
        headline = ((data.get("metrics") or {}).get(HEADLINE) or {}).get("data") or {}
        for dataset, measured in (headline.get(RUN) or {}).items():
            measures = [k for k, v in measured.items()
                        if isinstance(v, (int, float)) and not k.endswith(("_low", "_high", "_n"))]
            row = {
                "rev": revision_name(rev),
                "dataset": dataset,
                "split": params.get("eval_split", "test"),
                "model": (params.get("model") or {}).get("name"),
                **{k: number(params.get(k)) for k in HYPER},
                "accuracy": {k: measured[k] for k in measures},
                "interval": {k: [measured[f"{k}_low"], measured[f"{k}_high"]] for k in measures
                             if f"{k}_low" in measured and f"{k}_high" in measured},
                "n": {k: measured[f"{k}_n"] for k in measures if f"{k}_n" in measured},
            }
            key = json.dumps({k: v for k, v in row.items() if k != "rev"}, sort_keys=True)
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return rows


def picked(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The validation setting chosen: the highest AutoAttack accuracy, ties to the higher clean accuracy;
    None on the test split (choosing there would tune on the test) or without AutoAttack results."""
    scored = [r for r in rows if r["split"] == "val" and "autoattack" in r["accuracy"]]
    if not scored:
        return None
    return max(scored, key=lambda r: (r["accuracy"]["autoattack"], r["accuracy"].get("clean", 0.0)))


def paper_row(row: dict[str, Any]) -> dict[str, float] | None:
    if (row["dataset"], row["model"]) != paper.SENSITIVITY_SETTING:
        return None
    for (lj, lsw, k), values in paper.SENSITIVITY.items():
        if (row["lambda_j"], row["lambda_sw"], row["num_projections"]) == (lj, lsw, k):
            return dict(zip(paper.SENSITIVITY_COLUMNS, values))
    return None


def _cell(row: dict[str, Any], measure: str, with_n: bool) -> str:
    value = row["accuracy"].get(measure)
    if value is None:
        return fmt(None)
    low, high = row["interval"].get(measure, (None, None))
    text = fmt(value) + (f" [{low:.1f}, {high:.1f}]" if low is not None else "")
    return text + (f" (n {row['n'][measure]})" if with_n and measure in row["n"] else "")


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["# Hyper-parameter sensitivity of OTJR (paper Table 8)", ""]
    if not rows:
        return "\n".join(lines + ["No experiment with OTJR results found in `dvc exp show`.", ""])
    for dataset, split in sorted({(r["dataset"], r["split"]) for r in rows}):
        subset = sorted((r for r in rows if (r["dataset"], r["split"]) == (dataset, split)),
                        key=lambda r: tuple(-1 if r[k] is None else r[k] for k in HYPER))
        cols = [c for c in paper.SENSITIVITY_COLUMNS + ("worst_case",) if any(c in r["accuracy"] for r in subset)]
        sizes = {c: {r["n"].get(c) for r in subset if c in r["accuracy"]} for c in cols}
        uniform = all(len(v) == 1 and None not in v for v in sizes.values())
        header = ["lambda_J", "lambda_SW", "K", "Model", "Experiment"] + [
            LABELS.get(c, c) + (f" (n {next(iter(sizes[c]))})" if uniform else "") for c in cols]
        body = []
        for r in subset:
            hyper = [f"{r[k]:g}" if r[k] is not None else "-" for k in HYPER]
            body.append(hyper + [r["model"] or "-", r["rev"]] + [_cell(r, c, not uniform) for c in cols])
            theirs = paper_row(r)
            if theirs:
                body.append(["", "", "", "", "paper, Table 8"] + [fmt(theirs.get(c)) for c in cols])
                body.append(["", "", "", "", "ours - paper"] + [
                    signed(r["accuracy"][c] - theirs[c]) if c in r["accuracy"] and c in theirs else "-" for c in cols])
        where = "validation split" if split == "val" else f"{split} split"
        lines += [f"## {dataset} ({where})", ""] + table(header, body, right=5) + [""]
        lines += ["Accuracy (%) [95% interval: Clopper-Pearson, or Student t over seeds]; n images per column.", ""]
        choice = picked(subset)
        if choice is not None:
            lines += [f"Picked on the validation split: lambda_J {choice['lambda_j']:g}, lambda_SW "
                      f"{choice['lambda_sw']:g}, K {choice['num_projections']:g} (experiment {choice['rev']}): the "
                      "highest AutoAttack accuracy, ties to the higher clean accuracy. Overlapping intervals mean "
                      "the pick is not a significant difference.", ""]
    return "\n".join(lines)


def sensitivity_report(exp_json: Path | None = None) -> str:
    """Write metrics/sensitivity.{json,md} from `dvc exp show --json` (or a saved copy); returns the markdown."""
    data = read_json(exp_json, what="dvc exp show JSON") if exp_json else exp_show_json(paths.root())
    rows = rows_from(data)
    text = markdown(rows)
    choices = {f"{ds}/{split}": picked([r for r in rows if (r["dataset"], r["split"]) == (ds, split)])
               for ds, split in sorted({(r["dataset"], r["split"]) for r in rows})}
    write_json(paths.sensitivity_result("json"), {"rows": rows, "picked": {k: v for k, v in choices.items() if v}})
    write_text(paths.sensitivity_result("md"), text)
    return text
