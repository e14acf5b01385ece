"""The transcribed paper numbers (pipeline.report.paper) against the paper's own text."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pipeline.report import paper

#: The paper as plain text (main text and supplement), which the repository does not ship.
PAPER = Path(os.environ.get("OTJR_PAPER", "otjr-paper.txt"))
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
LABEL = {"trades": "TRADES", "alp": "ALP", "pgd_at": "PGD-AT", "sat": "SAT", "rand_jr": "Random JR", "sw": "SW",
         "otjr": "OTJR", "sat_jr": "SAT+JR", "opt_jr": "Optimal JR", "xe": "mathcal{X}", "pgd": "PGD"}


def block(lines: list[str], number: int) -> list[list[str]]:
    """Tab-separated rows printed just before the caption 'Table <number>:'."""
    caption = next(i for i, line in enumerate(lines) if line.startswith(f"Table {number}:"))
    i = caption - 1
    while not lines[i].strip():
        i -= 1
    rows = []
    while "\t" in lines[i]:
        rows.append(lines[i].split("\t"))
        i -= 1
    return rows[::-1]


def numeric_rows(rows: list[list[str]]) -> list[tuple[str, list[float]]]:
    """(label, numbers) of each row with numbers; the label is the last non-numeric cell before them."""
    out = []
    for cells in rows:
        numbers = [float(c) for c in cells if NUMBER.match(c.strip())]
        labels = [c.strip() for c in cells if c.strip() and not NUMBER.match(c.strip())]
        if numbers:
            out.append((labels[-1] if labels else "", numbers))
    return out


@pytest.fixture(scope="module")
def lines() -> list[str]:
    if not PAPER.is_file():
        pytest.skip(f"paper text not found at {PAPER} (set OTJR_PAPER to the paper's text file)")
    return PAPER.read_text().splitlines()


@pytest.mark.parametrize("table", [paper.TABLE2, paper.TABLE4, paper.TABLE6, paper.TABLE7, paper.TABLE9],
                         ids=lambda t: f"table{t.number}")
def test_robustness_tables_match_the_paper_text(lines, table):
    printed = numeric_rows(block(lines, table.number))
    assert [numbers for _, numbers in printed] == [list(r.values.values()) for r in table.rows]
    for (label, _), row in zip(printed, table.rows):
        assert LABEL[row.run.split("-")[0]] in label, (label, row.run)


def test_table3_matches_the_paper_text(lines):
    printed = numeric_rows(block(lines, 3))
    by_run = {r.run: list(r.values.values()) for r in paper.TABLE3.rows}
    assert printed == [("TRADES", by_run["trades-awp"] + by_run["trades-lbgat"]),
                       ("OTJR", by_run["otjr-awp"] + by_run["otjr-lbgat"])]


def test_input_gradient_tables_match_the_paper_text(lines):
    printed = numeric_rows(block(lines, 12))
    assert [n for _, n in printed] == [list(map(float, v)) for v in paper.INPUT_GRADIENT.values()]
    for (label, _), run in zip(printed, paper.INPUT_GRADIENT):
        assert LABEL["pgd" if run == "pgd_at" else run] in label
    cells = [c.strip() for row in block(lines, 5)[1:] for c in row]
    printed5 = dict(zip(cells[::2], (int(re.fullmatch(r"\$(\d+)e\^\{-4\}\$", c).group(1)) for c in cells[1::2])))
    names = {"$\\mathcal{X}\\mathcal{E}$": "xe", "PGD-AT": "pgd_at", "ALP": "alp", "TRADES": "trades", "SAT": "sat",
             "OTJR (<i>Ours</i>)": "otjr"}
    assert {names[k]: v for k, v in printed5.items()} == {k: v[0] for k, v in paper.INPUT_GRADIENT.items() if k != "rand_jr"}


def test_sensitivity_table_matches_the_paper_text(lines):
    printed = [n for _, n in numeric_rows(block(lines, 8)) if len(n) == 7]
    assert printed == [list(k) + list(v) for k, v in paper.SENSITIVITY.items()]


def test_sanity_and_time_tables_match_the_paper_text(lines):
    printed = [n for _, n in numeric_rows(block(lines, 10))]
    assert [paper.SANITY_CLEAN, *paper.SANITY_STEPS.values()] in printed
    assert [paper.SANITY_CLEAN, *paper.SANITY_EPS.values()] in printed
    assert [float(s) for s in paper.SANITY_STEPS] in printed
    cells = [c.strip() for row in block(lines, 11)[1:] for c in row]
    times = dict(zip(cells[::2], map(float, cells[1::2])))
    names = {"$\\mathcal{X}\\mathcal{E}$": "xe", "PGD-AT": "pgd_at", "ALP": "alp", "TRADES": "trades", "SAT": "sat",
             "OTJR (Ours)": "otjr"}
    assert {names[k]: v for k, v in times.items()} == paper.TRAINING_MINUTES


def test_every_implausible_printed_row_is_flagged():
    """An attack cannot leave more correct than clean, nor AutoAttack more than PGD-20: such rows are misprints
    (flagged in NOTES) or transcription errors (a failure here)."""
    for table in paper.ROBUSTNESS:
        for row in table.rows:
            v = row.values
            implausible = any(a > v["clean"] for k, a in v.items() if k != "clean")
            implausible |= "pgd20" in v and v["autoattack"] > v["pgd20"]
            implausible |= "pgd100" in v and v["pgd100"] > v["pgd20"]
            if implausible:
                assert "misprint" in paper.note(table.number, row.dataset, row.run), row


def test_lookup_needs_dataset_model_and_run_to_match():
    assert paper.robustness_row("cifar10", "wrn34_10", "otjr").values["autoattack"] == 52.41
    assert paper.robustness_row("cifar10", "wrn28_10", "otjr").table == 9
    assert paper.robustness_row("cifar100", "wrn34_10", "otjr-awp").table == 3
    assert paper.robustness_row("cifar10", "preact_resnet18", "otjr") is None
    assert paper.robustness_row("digits", "small_cnn", "otjr") is None
    assert paper.robustness_row("cifar100", "wrn34_10", "sat").epochs == 400
