"""The report's markdown tables: robustness, evaluation cost, paper comparison, sanity, training and attack
time, analyses.

Each function takes one dataset's `RunResults` and returns markdown lines ([] when there is
nothing to show); a value that was not measured is '-'.
"""

from __future__ import annotations

import math
from typing import Any

from . import paper
from .aggregate import LABELS, ordered_columns
from .collect import RunResults, sanity_sweeps
from .evidence import interval_cells, threat_worst_cases

MISSING = "-"
SYMBOL = {"pass": "pass", "warn": "**warn**", "fail": "**FAIL**", "skip": "skip"}


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:.{digits}f}"


def signed(value: float) -> str:
    return f"{value:+.2f}"


def table(header: list[str], rows: list[list[str]], right: int = 1) -> list[str]:
    """A markdown table; columns from index `right` on are right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


def _median(value: float | None) -> str:
    """DeepFool's median L2 distance; None where it fooled at most half the attacked images (the median is infinite)."""
    return f"{value:.4g}" if value is not None else "inf (at most half fooled)"


def robustness(results: list[RunResults]) -> list[str]:
    """Paper Table 2's layout: accuracy (%) under every attack run, the worst case, the sanity verdict."""
    cols = ordered_columns({k for r in results for k in r.accuracy})
    models = {r.model for r in results if r.record}
    header = ["Run"] + (["Model"] if len(models) > 1 else []) + [LABELS.get(c, c) for c in cols] + ["Sanity"]
    rows = []
    for r in results:
        acc = r.accuracy
        cells = [r.run] + ([r.model or MISSING] if len(models) > 1 else [])
        cells += [fmt(acc.get(c)) for c in cols] if r.record else ["not evaluated"] + [MISSING] * (len(cols) - 1)
        cells.append(SYMBOL.get((r.sanity or {}).get("verdict"), MISSING))
        rows.append(cells)
    lines = table(header, rows)
    medians = [f"{r.run} {_median(r.record['deepfool']['median_l2'])}" for r in results
               if r.record and isinstance(r.record.get("deepfool"), dict) and "median_l2" in r.record["deepfool"]]
    if medians:
        lines += ["", "DeepFool median L2 distance: " + ", ".join(medians) + "."]
    return lines


def robustness_intervals(results: list[RunResults]) -> list[str]:
    """95% Clopper-Pearson interval (%) of every accuracy of the robustness table, same layout."""
    cols = ordered_columns({k for r in results for k in r.accuracy})
    rows = [[r.run] + interval_cells(r.record, cols) for r in results if r.record]
    return table(["Run"] + [LABELS.get(c, c) for c in cols], rows) if rows else []


def threat_worst_case_table(results: list[RunResults], flags: dict[str, dict[str, list[bool]]]) -> list[str]:
    """Worst case per threat model: accuracy (%) [95% Clopper-Pearson] and n, one column per ball; empty when
    every attack of the suite shares one ball (the worst-case column is then this)."""
    found = {r.run: threat_worst_cases(r.record, flags[r.run]) for r in results if r.record and flags.get(r.run)}
    labels = sorted({k for v in found.values() for k in v})
    if len(labels) < 2:
        return []
    rows = [[run] + [f"{e['accuracy']:.2f} [{e['clopper_pearson'][0]:.1f}, {e['clopper_pearson'][1]:.1f}], n = {e['n']}"
                     if (e := by.get(k)) else MISSING for k in labels] for run, by in found.items()]
    attacks = {k: next(v[k]["attacks"] for v in found.values() if k in v) for k in labels}
    return table(["Run"] + labels, rows) + ["", "Attacks per ball: " + "; ".join(
        f"{k}: {', '.join(LABELS.get(a, a) for a in attacks[k])}" for k in labels) + "."]


def evaluation_cost(results: list[RunResults]) -> list[str]:
    """Forward-equivalent passes per test image of every attack (the record's `passes`, over the images the attack
    saw), then the suite's with the clean pass (`worst_case.passes`) per evaluated image and in all."""
    counted = [r for r in results if r.record and "passes" in r.record.get("worst_case", {})]
    if not counted:
        return []
    cols = ordered_columns({k for r in counted for k, v in r.record.items() if isinstance(v, dict) and "passes" in v}
                           - {"worst_case"})
    rows = []
    for r in counted:
        total = r.record["worst_case"]["passes"]
        cells = [fmt(r.record[c]["passes"]["per_image"], 1) if "passes" in r.record.get(c, {}) else MISSING
                 for c in cols]
        rows.append([r.run] + cells + [fmt(total["per_image"], 1), str(total["forward_equivalents"])])
    return table(["Run"] + [LABELS.get(c, c) for c in cols] + ["Total / image", "Total"], rows)


def attack_seconds(results: list[RunResults]) -> list[str]:
    """Seconds of every attack here (`core.timing`; a sharded run's are summed over its ranks: device-seconds) and
    the suite's, with the devices and the number of ranks (1 where the timing file states none)."""
    timed = [r for r in results if r.attack_timing.get("seconds")]
    if not timed:
        return []
    cols = ordered_columns({k for r in timed for k in r.attack_timing["seconds"]})
    rows = []
    for r in timed:
        t = r.attack_timing
        devices = ", ".join(dict.fromkeys(t.get("devices") or [str(t.get("device") or MISSING)]))
        rows.append([r.run, devices, str(t.get("ranks", 1))] + [fmt(t["seconds"].get(c), 3) for c in cols]
                    + [fmt(sum(t["seconds"].values()), 3)])
    return table(["Run", "Devices", "Ranks"] + [LABELS.get(c, c) for c in cols] + ["Total"], rows, right=2)


def paper_rows(results: list[RunResults]) -> list[tuple[RunResults, paper.Row]]:
    return [(r, row) for r in results if r.record
            for row in [paper.robustness_row(r.dataset, r.model, r.run)] if row is not None]


def paper_comparison(results: list[RunResults]) -> list[str]:
    """Ours, the paper's, and the difference for every run whose dataset, model and method match a paper row."""
    matched = paper_rows(results)
    if not matched:
        return []
    cols = [c for c in paper.FULL if any(c in row.values and c in r.accuracy for r, row in matched)]
    header = ["Run", "Source"] + [LABELS.get(c, c) + (" †" if c in paper.PROTOCOL_DIFFERS else "") for c in cols]
    rows, notes = [], []
    for r, row in matched:
        acc = r.accuracy
        rows.append([r.run, f"ours ({r.epochs} epochs, n={r.record['n']})"] + [fmt(acc.get(c)) for c in cols])
        rows.append(["", f"paper, Table {row.table} ({row.epochs} epochs)"] + [fmt(row.values.get(c)) for c in cols])
        rows.append(["", "ours - paper"] + [signed(acc[c] - row.values[c]) if c in acc and c in row.values else MISSING
                                            for c in cols])
        if paper.note(row.table, row.dataset, row.run):
            notes.append(f"- {r.run}: {paper.note(row.table, row.dataset, row.run)}.")
    notes += [f"- † {LABELS.get(c, c)}: {paper.PROTOCOL_DIFFERS[c]}." for c in cols if c in paper.PROTOCOL_DIFFERS]
    unmeasured = sorted({LABELS.get(c, c) for _, row in matched for c in row.values} - {LABELS.get(c, c) for c in cols})
    if unmeasured:
        notes.append(f"- The paper also reports {', '.join(unmeasured)}; those attacks were not run here.")
    return table(header, rows, right=2) + ([""] + notes if notes else [])


def sanity(results: list[RunResults]) -> list[str]:
    """One column per sanity rule; below, the detail of every rule that did not pass."""
    checked = [r for r in results if r.sanity]
    if not checked:
        return []
    names: dict[int, str] = {}
    for r in checked:
        for rule in r.sanity["rules"]:
            names.setdefault(rule["id"], rule["name"])
    ids = sorted(names)
    rows = []
    for r in checked:
        verdicts = {rule["id"]: rule["verdict"] for rule in r.sanity["rules"]}
        rows.append([r.run, SYMBOL.get(r.sanity["verdict"], r.sanity["verdict"])]
                    + [SYMBOL.get(verdicts.get(i), MISSING) for i in ids])
    lines = table(["Run", "Overall"] + [f"Rule {i}" for i in ids], rows)
    lines += ["", "Rules: " + "; ".join(f"{i}. {names[i]}" for i in ids) + "."]
    details = [f"- {r.run}, rule {rule['id']} ({rule['verdict']}): {rule['detail']}"
               for r in checked for rule in r.sanity["rules"] if rule["verdict"] in ("warn", "fail")]
    return lines + ([""] + details if details else [])


def training_time(results: list[RunResults]) -> list[str]:
    """Paper Table 11: mean seconds per epoch here (`core.timing`), relative to XE, and the paper's minutes where
    matched."""
    timed = [r for r in results if r.timing]
    if not timed:
        return []
    base = next((r.timing["seconds_per_epoch"] for r in timed if r.run == "xe"), None)
    matches = [r for r in timed if (r.dataset, r.model) == paper.TRAINING_TIME_SETTING
               and r.run in paper.TRAINING_MINUTES]
    header = ["Run", "Device", "Epochs", "s / epoch", "Total s"] + (["x XE"] if base else [])
    if matches:
        header += [f"paper min / epoch ({paper.TRAINING_TIME_DEVICE})", "paper x XE"]
    rows = []
    for r in timed:
        t = r.timing
        cells = [r.run, str(t.get("device") or MISSING), str(r.epochs or MISSING), fmt(t["seconds_per_epoch"], 3),
                 fmt(t.get("train_seconds"), 1)]
        if base:
            cells.append(fmt(t["seconds_per_epoch"] / base, 1) if base > 0 else MISSING)
        if matches:
            minutes = paper.TRAINING_MINUTES.get(r.run)
            cells += [fmt(minutes), fmt(minutes / paper.TRAINING_MINUTES["xe"], 1) if minutes else MISSING]
        rows.append(cells)
    return table(header, rows)


def input_gradients(results: list[RunResults]) -> list[str]:
    """Paper Tables 5 and 12: mean |d CE / d x| per pixel (x 1e-4) at the clean point and after PGD-k."""
    analysed = [r for r in results if r.analysis]
    if not analysed:
        return []
    steps = analysed[0].analysis["input_gradient"]["steps"]
    header = ["Run"] + [("Clean" if k == 0 else f"PGD-{k}") + " (x1e-4)" for k in steps]
    rows = []
    for r in analysed:
        rows.append([r.run] + [fmt(v * 1e4, 1) for v in r.analysis["input_gradient"]["mean_abs"]])
        if (r.dataset, r.model) == paper.INPUT_GRADIENT_SETTING and r.run in paper.INPUT_GRADIENT:
            theirs = dict(zip(paper.INPUT_GRADIENT_STEPS, paper.INPUT_GRADIENT[r.run]))
            rows.append([f"{r.run} (paper, Table 12)"] + [fmt(theirs.get(k), 0) if k in theirs else MISSING
                                                           for k in steps])
    return table(header, rows)


def analysis_summary(results: list[RunResults]) -> list[str]:
    """One line per run summarising the activation, layer-ratio and cross-section analyses."""
    analysed = [r for r in results if r.analysis]
    if not analysed:
        return []
    rows = []
    for r in analysed:
        a: dict[str, Any] = r.analysis
        act = a["activations"]
        clean, adv = sum(act["clean"]) / len(act["clean"]), sum(act["adversarial"]) / len(act["adversarial"])
        ratios = [m for m in a["layer_ratios"]["mean"] if m is not None]
        fractions = [s["own_class_fraction"] for s in a["cross_sections"]]
        flipped = sum(s["adversarial_prediction"] != s["prediction"] for s in a["cross_sections"])
        rows.append([r.run, fmt(clean, 3), fmt(adv, 3), fmt(adv / clean if clean else None),
                     fmt(sum(ratios) / len(ratios) if ratios else None),
                     fmt(100 * sum(fractions) / len(fractions) if fractions else None, 1),
                     f"{flipped}/{len(fractions)}"])
    return table(["Run", "mean act. clean", "mean act. PGD", "PGD / clean", "grad ratio (mean over layers)",
                  "own-class area (%)", "images flipped by PGD"], rows)


def sanity_sweep_comparison(results: list[RunResults]) -> list[str]:
    """Paper Table 10 (OTJR, CIFAR-10, WRN-34-10): our PGD sweep accuracy where the budgets / step counts coincide."""
    r = next((r for r in results if (r.dataset, r.model, r.run) == paper.SANITY_SETTING and r.sanity), None)
    if r is None:
        return []
    rows = []
    for axis, theirs in (("eps", paper.SANITY_EPS), ("steps", paper.SANITY_STEPS)):
        ours = dict(zip(*[sanity_sweeps(r.sanity).get(axis, {}).get(k, []) for k in ("x", "accuracy")]))
        for x, acc in theirs.items():
            match = next((a for e, a in ours.items() if abs(e - x) < 1e-6), None)
            if match is not None:
                label = f"eps {round(x * 255)}/255" if axis == "eps" else f"PGD-{x}"
                rows.append([label, fmt(match), fmt(acc), signed(match - acc)])
    return table(["otjr: setting", "ours", "paper, Table 10", "ours - paper"], rows) if rows else []
