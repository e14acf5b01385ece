"""Aggregate: every model's record -> metrics/summary.json (for dvc metrics) and a paper-style table."""

from __future__ import annotations

from typing import Any

from ..core import paths
from ..core.io import read_json, write_json, write_text
from ..params import Params
from . import evidence, stats
from .sizes import evaluated_on

#: Column order of the paper's Table 2, then what the paper does not tabulate.
COLUMNS = ["clean", "pgd20", "pgd100", "l2_pgd", "mim", "fgsm", "cw_inf", "fab", "fab_t", "square", "simba",
           "autoattack", "deepfool", "worst_case"]
LABELS = {"clean": "Clean", "pgd20": "PGD-20", "pgd100": "PGD-100", "l2_pgd": "L2-PGD", "mim": "MIM", "fgsm": "FGSM",
          "cw_inf": "CW-inf", "fab": "FAB", "fab_t": "FAB-T", "square": "Square", "simba": "SimBA",
          "autoattack": "AutoAttack", "deepfool": "DeepFool", "worst_case": "Worst case"}


def accuracies(record: dict[str, Any]) -> dict[str, float]:
    """attack -> accuracy (percent, 2 decimals) for every entry of a result record."""
    return {k: round(v["accuracy"], 2) for k, v in record.items() if isinstance(v, dict) and "accuracy" in v}


def ordered_columns(keys: set[str]) -> list[str]:
    """Table 2's column order for the attacks present; unknown attacks before the worst case."""
    present = [c for c in COLUMNS if c in keys]
    extra = sorted(keys - set(COLUMNS))
    if present and present[-1] == "worst_case":
        return present[:-1] + extra + present[-1:]
    return present + extra


def collect(params: Params) -> tuple[dict, dict, dict]:
    summary: dict[str, dict[str, dict[str, float]]] = {}
    records: dict[tuple[str, str], dict] = {}
    sanity: dict[tuple[str, str], dict] = {}
    for run in params.methods:
        for ds in params.datasets:
            rec = read_json(paths.attack_result(ds, run), what="attack result")
            records[(ds, run)] = rec
            summary.setdefault(run, {})[ds] = accuracies(rec)
            sanity[(ds, run)] = read_json(paths.sanity_result(ds, run), what="sanity result")
    return summary, records, sanity


def markdown(params: Params, summary: dict, records: dict, sanity: dict, claims: dict) -> str:
    lines = ["# Robust accuracy (%)", ""]
    for ds in params.datasets:
        cols = ordered_columns({k for r in params.methods for k in summary[r][ds]})
        first = records[(ds, params.methods[0])]
        lines += [f"## {ds}", "",
                  f"{evaluated_on(first)}, seed {first['seed']}, device {first['device']}", ""]
        lines.append("| Method | " + " | ".join(LABELS.get(c, c) for c in cols) + " | Sanity |")
        lines.append("|---|" + "---:|" * len(cols) + "---|")
        for run in params.methods:
            row = summary[run][ds]
            cells = [f"{row[c]:.2f}" if c in row else "-" for c in cols]
            verdict = sanity[(ds, run)]["verdict"]
            lines.append(f"| {run} | " + " | ".join(cells) + f" | {verdict} |")
        lines += ["", "95% Clopper-Pearson intervals (%) of the same accuracies (k correct of n):", "",
                  "| Method | " + " | ".join(LABELS.get(c, c) for c in cols) + " |", "|---|" + "---:|" * len(cols)]
        lines += [f"| {run} | " + " | ".join(evidence.interval_cells(records[(ds, run)], cols)) + " |"
                  for run in params.methods]
        lines += ["", "Claims of the paper (see the report for how each is measured):", ""]
        lines += evidence.claims_markdown(claims[ds])
        lines += ["", "Sanity checks (rule: verdict per method):", ""]
        for run in params.methods:
            checks = ", ".join(f"{c['id']}:{c['verdict']}" for c in sanity[(ds, run)]["rules"])
            lines.append(f"- {run}: {checks}")
        lines += ["", "Attack settings:", ""]
        for name, entry in first.items():
            if isinstance(entry, dict) and "implementation" in entry:
                lines.append(f"- {LABELS.get(name, name)}: {entry['params']} ({entry['implementation']} "
                             f"{entry['implementation_version']})")
        lines.append("")
    versions = records[(params.datasets[0], params.methods[0])]["versions"]
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    report = paths.report_dir() / "report.md"
    if report.is_file():
        lines += ["", f"Report with figures and the paper's numbers: {report.relative_to(paths.root())}"]
    return "\n".join(lines) + "\n"


def summary_stats(params: Params, records: dict, claims: dict) -> dict:
    """metrics/summary_stats.json: every accuracy's intervals and every claim's paired test, per dataset."""
    return {
        "level": stats.LEVEL,
        "methods": {"interval": "Clopper-Pearson (exact); Wilson also given", "paired_test": "exact McNemar, two-sided",
                    "difference_interval": "Newcombe hybrid score, paired (method 10)",
                    "conditional_interval": "exact given the discordant images (agrees with the test)",
                    "correction": "Holm, over the paired claims of each dataset", "units": "percent"},
        "accuracy": {run: {ds: evidence.record_intervals(records[(ds, run)]) for ds in params.datasets}
                     for run in params.methods},
        "claims": {ds: [r.as_dict() for r in claims[ds]] for ds in params.datasets},
    }


def aggregate(params: Params) -> str:
    """Write metrics/summary.json, metrics/summary_stats.json and metrics/summary.md; returns the markdown."""
    summary, records, sanity = collect(params)
    claims = {ds: evidence.claims_for(ds, params.methods) for ds in params.datasets}
    text = markdown(params, summary, records, sanity, claims)
    write_json(paths.summary_json(), summary)
    write_json(paths.summary_stats_json(), summary_stats(params, records, claims))
    write_text(paths.summary_md(), text)
    return text
