"""Aggregate: every model's record -> metrics/summary.json (for dvc metrics) and a paper-style table."""

from __future__ import annotations

from statistics import fmean, stdev
from typing import Any

from ..core import paths
from ..core.io import write_json, write_text
from ..methods import variants_from
from ..params import Params
from . import evidence, stats
from .records import seed_records
from .sizes import evaluated_on

#: Column order of the paper's Table 2, then what the paper does not tabulate.
COLUMNS = ["clean", "pgd20", "pgd100", "l2_pgd", "mim", "fgsm", "cw_inf", "fab", "fab_t", "square", "simba",
           "autoattack", "deepfool", "worst_case"]
LABELS = {"clean": "Clean", "pgd20": "PGD-20", "pgd100": "PGD-100", "l2_pgd": "L2-PGD", "mim": "MIM", "fgsm": "FGSM",
          "cw_inf": "CW-inf", "fab": "FAB", "fab_t": "FAB-T", "square": "Square", "simba": "SimBA",
          "autoattack": "AutoAttack", "deepfool": "DeepFool", "worst_case": "Worst case"}


def ordered_columns(keys: set[str]) -> list[str]:
    """Table 2's column order for the attacks present; unknown attacks before the worst case."""
    present = [c for c in COLUMNS if c in keys]
    extra = sorted(keys - set(COLUMNS))
    if present and present[-1] == "worst_case":
        return present[:-1] + extra + present[-1:]
    return present + extra


def mean_accuracies(records: list[dict[str, Any]]) -> dict[str, float]:
    """attack -> mean accuracy over the seeds' records (percent, 2 decimals), for the attacks every seed ran.

    One record gives exactly `accuracies(record)`: summary.json keeps its schema and, with one seed, its bytes."""
    values = [{k: v["accuracy"] for k, v in r.items() if isinstance(v, dict) and "accuracy" in v} for r in records]
    return {k: round(fmean(v[k] for v in values), 2) for k in values[0] if all(k in v for v in values)}


def collect(params: Params) -> tuple[dict, dict, dict]:
    """summary {run: {ds: {attack: mean accuracy}}}, and the attack and sanity records {(ds, run): [per seed]}."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    records: dict[tuple[str, str], list[dict]] = {}
    sanity: dict[tuple[str, str], list[dict]] = {}
    for run in params.runs:
        for ds in params.datasets:
            records[(ds, run)] = seed_records(params.seeds, lambda: paths.attack_result(ds, run), "attack result")
            summary.setdefault(run, {})[ds] = mean_accuracies(records[(ds, run)])
            sanity[(ds, run)] = seed_records(params.seeds, lambda: paths.sanity_result(ds, run), "sanity result")
    return summary, records, sanity


def verdicts(sanity: list[dict]) -> str:
    """The sanity verdict of a run: one word when every seed agrees, else each seed's ('pass/warn')."""
    found = [s["verdict"] for s in sanity]
    return found[0] if len(set(found)) == 1 else "/".join(found)


def seed_interval_cells(records: list[dict], cols: list[str]) -> list[str]:
    """'lo-hi' (Student t 95% over the seeds, %) per column."""
    entries = seed_intervals(records)
    return [f"{entries[c]['seed_interval'][0]:.1f}-{entries[c]['seed_interval'][1]:.1f}" if c in entries else "-"
            for c in cols]


def seed_intervals(records: list[dict]) -> dict[str, dict[str, Any]]:
    """attack -> per-seed values, mean, spread and Student-t interval over the seeds, with each seed's own entry.

    The interval is clamped to [0, 100]: an accuracy's mean lies there, so clamping never drops it
    (the coverage stays the t-interval's), while a bound such as -0.2% for a run at 0% says nothing."""
    per_seed = [evidence.record_intervals(r) for r in records]
    out = {}
    for k in per_seed[0]:
        if not all(k in e for e in per_seed):
            continue
        values = [e[k]["accuracy"] for e in per_seed]
        lo, hi = stats.t_interval(values)
        lo, hi = max(lo, 0.0), min(hi, 100.0)
        out[k] = {"accuracy": fmean(values), "n": per_seed[0][k]["n"], "seeds": [r["seed"] for r in records],
                  "seed_values": values, "seed_std": stdev(values), "seed_interval": [lo, hi],
                  "per_seed": [e[k] for e in per_seed]}
    return out


def markdown(params: Params, summary: dict, records: dict, sanity: dict, claims: dict) -> str:
    several = bool(params.seeds)
    lines = ["# Robust accuracy (%)", ""]
    for ds in params.datasets:
        cols = ordered_columns({k for r in params.runs for k in summary[r][ds]})
        first = records[(ds, params.runs[0])][0]
        seeds = (f"seeds {', '.join(map(str, params.all_seeds))} (mean over seeds)" if several
                 else f"seed {first['seed']}")
        lines += [f"## {ds}", "",
                  f"{evaluated_on(first)}, {seeds}, device {first['device']}", ""]
        lines.append("| Method | " + " | ".join(LABELS.get(c, c) for c in cols) + " | Sanity |")
        lines.append("|---|" + "---:|" * len(cols) + "---|")
        for run in params.runs:
            row = summary[run][ds]
            cells = [f"{row[c]:.2f}" if c in row else "-" for c in cols]
            lines.append(f"| {run} | " + " | ".join(cells) + f" | {verdicts(sanity[(ds, run)])} |")
        if several:
            lines += ["", f"95% Student-t intervals (%) of the mean over the {len(params.all_seeds)} seeds "
                      "(per-seed values and Clopper-Pearson intervals in metrics/summary_stats.json):", ""]
        else:
            lines += ["", "95% Clopper-Pearson intervals (%) of the same accuracies (k correct of n):", ""]
        lines += ["| Method | " + " | ".join(LABELS.get(c, c) for c in cols) + " |", "|---|" + "---:|" * len(cols)]
        cells = seed_interval_cells if several else lambda recs, c: evidence.interval_cells(recs[0], c)
        lines += [f"| {run} | " + " | ".join(cells(records[(ds, run)], cols)) + " |" for run in params.runs]
        lines += ["", "Claims of the paper (see the report for how each is measured):", ""]
        lines += evidence.claims_markdown(claims[ds])
        lines += ["", "Sanity checks (rule: verdict per method" + (", first seed" if several else "") + "):", ""]
        for run in params.runs:
            checks = ", ".join(f"{c['id']}:{c['verdict']}" for c in sanity[(ds, run)][0]["rules"])
            lines.append(f"- {run}: {checks}")
        lines += ["", "Attack settings:", ""]
        for name, entry in first.items():
            if isinstance(entry, dict) and "implementation" in entry:
                lines.append(f"- {LABELS.get(name, name)}: {entry['params']} ({entry['implementation']} "
                             f"{entry['implementation_version']})")
        lines.append("")
    versions = records[(params.datasets[0], params.runs[0])][0]["versions"]
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    report = paths.report_dir() / "report.md"
    if report.is_file():
        lines += ["", f"Report with figures and the paper's numbers: {report.relative_to(paths.root())}"]
    return "\n".join(lines) + "\n"


def summary_stats(params: Params, records: dict, claims: dict) -> dict:
    """metrics/summary_stats.json: every accuracy's intervals and every claim's paired test, per dataset.

    With further seeds each accuracy is the mean over the seeds, with the per-seed values, their spread
    (std), a Student-t interval over the seeds and each seed's own entry (Clopper-Pearson, Wilson)."""
    one = lambda recs: evidence.record_intervals(recs[0]) if not params.seeds else seed_intervals(recs)  # noqa: E731
    return {
        "level": stats.LEVEL,
        **({"seeds": list(params.all_seeds)} if params.seeds else {}),
        "methods": {"interval": "Clopper-Pearson (exact); Wilson also given", "paired_test": "exact McNemar, two-sided",
                    "difference_interval": "Newcombe hybrid score, paired (method 10)",
                    "conditional_interval": "exact given the discordant images (agrees with the test)",
                    "correction": "Holm, over the paired claims of each dataset", "units": "percent",
                    **({"seeds": "accuracy: mean over the seeds, seed_interval Student t over the seeds; paired "
                                 "tests: McNemar on the discordant images pooled over the seeds"}
                       if params.seeds else {})},
        "accuracy": {run: {ds: one(records[(ds, run)]) for ds in params.datasets} for run in params.runs},
        "claims": {ds: [r.as_dict() for r in claims[ds]] for ds in params.datasets},
    }


#: The headline measures: what `dvc exp show` and `otjr exp show` compare (metrics/headline.json).
HEADLINE = ("clean", "pgd20", "pgd100", "autoattack", "worst_case")  # pgd100: paper Table 8's columns


def headline(params: Params, stats: dict, sanity: dict) -> dict:
    """metrics/headline.json, the one file DVC counts as metrics: per run and dataset each headline accuracy (%)
    with its interval as `<measure>_low` / `_high` (DVC drops lists), its images as `<measure>_n`, and the
    sanity verdict."""
    out: dict = {}
    for run in params.runs:
        for ds in params.datasets:
            row: dict[str, Any] = {}
            for measure in HEADLINE:
                entry = stats["accuracy"][run][ds].get(measure)
                if entry:
                    low, high = entry.get("seed_interval") or entry["clopper_pearson"]
                    row.update({measure: round(entry["accuracy"], 2), f"{measure}_low": round(low, 2),
                                f"{measure}_high": round(high, 2), f"{measure}_n": entry["n"]})
            row["sanity"] = verdicts(sanity[(ds, run)])
            out.setdefault(run, {})[ds] = row
    return out


def aggregate(params: Params) -> str:
    """Write metrics/summary.json, summary_stats.json, headline.json and summary.md; returns the markdown."""
    summary, records, sanity = collect(params)
    white_box = evidence.white_box_attacks(params.attack.kinds)
    variants = variants_from(params.variants)
    claims = {ds: evidence.claims_for(ds, params.runs, params.seeds, white_box, variants) for ds in params.datasets}
    text = markdown(params, summary, records, sanity, claims)
    stats = summary_stats(params, records, claims)
    write_json(paths.summary_json(), summary)
    write_json(paths.summary_stats_json(), stats)
    write_json(paths.headline_json(), headline(params, stats, sanity))
    write_text(paths.summary_md(), text)
    return text
