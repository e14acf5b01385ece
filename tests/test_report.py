"""The report builds from a small set of fake results: tables, paper comparisons, figures, dvc plots data, the
evaluation's cost (passes in the report, device-seconds in the timing report)."""

from __future__ import annotations

import csv
import re
import shutil

import pytest

from conftest import TINY, write_params
from fake_results import CIFAR10, attack_record, build_fake_world, with_passes, write
from pipeline.core import paths, timing
from pipeline.config import load_params
from pipeline.report import paper, tables
from pipeline.report.build import build_report
from pipeline.report.collect import RunResults
from pipeline.report.records import read_dvclive

RUNS = ("xe", "pgd_at", "otjr", "sw")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Fake results for cifar10 (wrn34_10, matching the paper) and digits (small_cnn); the report built from them
    once for the module (OTJR_ROOT stays set while its tests run)."""
    root = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTJR_ROOT", str(root))
        write_params(root, TINY)
        build_fake_world()
        params = load_params().model_copy(update={"datasets": ("cifar10", "digits"), "runs": RUNS})
        yield build_report(params).read_text()


def table_rows(text: str, heading: str) -> list[list[str]]:
    """Cells of the first markdown table after `heading`."""
    after = text[text.index(heading):]
    lines = [ln for ln in after.splitlines() if ln.startswith("|")]
    block = []
    for ln in after.splitlines()[after.splitlines().index(lines[0]):]:
        if not ln.startswith("|"):
            break
        block.append([c.strip() for c in ln.strip("|").split("|")])
    return [block[0]] + block[2:]


def section(text: str, start: str, end: str = "\n## ") -> str:
    i = text.index(start)
    j = text.find(end, i + len(start))
    return text[i : j if j > 0 else None]


def test_robustness_table_has_every_run_and_dashes_for_what_was_not_measured(report):
    rows = table_rows(section(report, "## cifar10"), "### Robust accuracy")
    header, body = rows[0], {r[0]: r for r in rows[1:]}
    assert header == ["Run", "Clean", "PGD-20", "FGSM", "FAB-T", "AutoAttack", "Worst case", "Sanity"]
    assert list(body) == list(RUNS)
    assert body["otjr"][header.index("PGD-20")] == "56.07"
    assert body["otjr"][header.index("FAB-T")] == "-"  # otjr was not attacked with FAB-T
    assert body["sw"][1] == "not evaluated" and set(body["sw"][2:]) == {"-"}
    assert body["xe"][-1] == "**FAIL**" and body["pgd_at"][-1] == "pass"


def test_matching_settings_are_compared_with_the_paper(report):
    cifar = section(report, "## cifar10")
    rows = table_rows(cifar, "### Compared with the paper")
    header = rows[0]
    assert header[:2] == ["Run", "Source"] and "PGD-100" not in header  # only columns we measured
    runs = [r[0] for r in rows[1:] if r[0]]
    assert runs == ["pgd_at", "otjr"]  # xe has no row in Table 2; sw was not evaluated
    otjr = next(i for i, r in enumerate(rows) if r[0] == "otjr")
    ours, theirs, diff = rows[otjr], rows[otjr + 1], rows[otjr + 2]
    col = header.index("PGD-20")
    assert ours[col] == "56.07" and theirs[col] == "55.07" and diff[col] == "+1.00"
    assert theirs[1] == "paper, Table 2 (100 epochs)"
    assert diff[header.index("AutoAttack")] == f"{CIFAR10['otjr']['autoattack'] - 52.41:+.2f}"
    assert "The paper also reports" in cifar and "PGD-100" in cifar
    assert "No run matches a paper setting" in section(report, "## digits")


def test_sanity_section_shows_every_rule_and_the_failures(report):
    cifar = section(report, "## cifar10")
    rows = table_rows(cifar, "### Sanity checks")
    assert rows[0] == ["Run", "Overall", "Rule 1", "Rule 3", "Rule 4", "Rule 5"]
    assert {r[0]: r[2:] for r in rows[1:]}["pgd_at"] == ["pass", "pass", "-", "pass"]
    assert "- xe, rule 3 (fail): weaker than FGSM: pgd20" in cifar
    table10 = {r[0]: r[1:] for r in table_rows(cifar, "| otjr: setting")[1:]}
    assert table10["eps 8/255"] == ["56.07", "55.07", "+1.00"] and table10["eps 128/255"] == ["0.00", "0.00", "+0.00"]
    assert "eps 24/255" not in table10  # not in our sweep
    assert table10["PGD-1"] == ["70.00", "79.45", "-9.45"] and len(table10) == 4 + 5


def test_analyses_are_tabulated_with_the_papers_input_gradients(report):
    rows = table_rows(section(report, "## cifar10"), "### Input-gradient magnitude")
    labels = [r[0] for r in rows[1:]]
    assert labels == ["xe", "xe (paper, Table 12)", "pgd_at", "pgd_at (paper, Table 12)", "otjr",
                      "otjr (paper, Table 12)", "sw"]
    assert rows[2][1:] == [str(v) for v in paper.INPUT_GRADIENT["xe"]]
    assert rows[1][1] == "100.0"  # 1e-2 per pixel in units of 1e-4
    summary = {r[0]: r for r in table_rows(section(report, "## cifar10"), "### Analyses")[1:]}
    assert summary["xe"][-1] == "2/2" and summary["otjr"][-1] == "0/2"
    assert "No analysis results for digits" in section(report, "## digits")


def test_every_figure_the_report_shows_exists(report):
    links = re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", report)
    names = {link.split("/")[-1] for link in links}
    for stem in ("paper_comparison", "clean_vs_robust", "sanity_sweeps", "training_curves",
                 "input_gradients", "activations", "layer_ratios", "cross_sections"):
        assert f"cifar10_{stem}.png" in names
    assert {"digits_clean_vs_robust.png", "digits_sanity_sweeps.png"} <= names
    assert "digits_cross_sections.png" not in names  # digits has no analysis
    for link in links:
        data = (paths.report_dir() / link).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    on_disk = {p.name for p in (paths.report_dir() / "figures").glob("*.png")}
    assert on_disk == names


def test_report_states_what_is_missing(report):
    missing = section(report, "## Settings and versions")
    assert "attack record: sw@cifar10" in missing and "analyses: xe@digits" in missing
    assert "training log: xe@digits" in missing


def test_dvc_plots_data(report):
    def read(name):
        with open(paths.report_plots_dir() / name, newline="") as f:
            return list(csv.DictReader(f))

    loss = read("train_loss.csv")
    assert len(loss) == 4 * 5 and {r["model"] for r in loss} == {f"{r}@cifar10" for r in RUNS}
    assert [float(r["loss"]) for r in loss if r["model"] == "otjr@cifar10"] == pytest.approx([2.0 / e for e in range(1, 6)])
    assert [int(r["epoch"]) for r in loss[:5]] == [1, 2, 3, 4, 5]
    scatter = read("clean_vs_robust.csv")
    assert len(scatter) == 7  # every evaluated (run, dataset); sw@cifar10 was not evaluated
    otjr = next(r for r in scatter if r["model"] == "otjr@cifar10")
    assert float(otjr["worst_case"]) == 51.5 and otjr["pgd20"] == "56.07"
    sweep = read("eps_sweep.csv")
    assert len(sweep) == 7 * 5 and float(sweep[0]["eps"]) == 0.0


def test_report_builds_again_without_stale_figures(project):
    build_fake_world()
    params = load_params().model_copy(update={"datasets": ("cifar10", "digits"), "runs": RUNS})
    build_report(params)
    build_report(params.model_copy(update={"datasets": ("digits",)}))
    assert {p.name for p in (paths.report_dir() / "figures").glob("*.png")} == {
        "digits_clean_vs_robust.png", "digits_sanity_sweeps.png"}


def test_dvclive_logs_are_read_per_epoch(project):
    from fake_results import training_log

    training_log("cifar10", "otjr", 3, adversarial=True)
    curves = read_dvclive(paths.train_log_dir("cifar10", "otjr"))
    assert set(curves) == {"train/loss", "train/ce_adv", "val/clean_acc", "val/pgd_acc"}
    assert curves["val/clean_acc"] == [(1, 53.0), (2, 56.0), (3, 59.0)]
    assert read_dvclive(paths.train_log_dir("cifar10", "absent")) == {}


def test_wall_times_stay_out_of_the_report_in_the_timing_report(report):
    assert "s / epoch" not in report and "](../timing/report.md)" in section(report, "## cifar10")
    timed = (paths.timing_dir() / "report.md").read_text()
    rows = {r[0]: r for r in table_rows(timed, "### cifar10: training time per epoch")[1:]}
    assert set(rows) == {"xe", "pgd_at", "otjr", "sw"} and rows["otjr"][3] == "60.000"  # s / epoch
    assert (paths.timing_dir() / "figures" / "cifar10_training_time.png").read_bytes().startswith(PNG)
    assert "No training of digits timed here." in timed


def test_training_time_is_compared_with_table_11_on_its_setting(project):
    from pipeline.core import timing

    def run(name, seconds):
        timing.write("train", "cifar100", name, device="cuda", train_seconds=100 * seconds,
                     epoch_seconds=[seconds] * 100)
        return RunResults("cifar100", name, {"n": 10, "training": {"model": {"name": "wrn34_10"},
                                                                   "train": {"epochs": 100}}}, None, {}, {})

    rows = tables.training_time([run("xe", 60.0), run("otjr", 900.0), run("sw", 600.0)])
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    body = {c[0]: c for c in ([x.strip() for x in r.strip("|").split("|")] for r in rows[2:])}
    assert header[-2].startswith("paper min / epoch") and header[-1] == "paper x XE"
    assert body["otjr"][header.index("x XE")] == "15.0"
    assert body["otjr"][-2:] == ["18.68", f"{18.68 / 1.27:.1f}"]
    assert body["sw"][-2:] == ["-", "-"]  # Table 11 has no SW row


def test_paper_comparison_links_the_fidelity_table(report):
    cifar = section(report, "## cifar10")
    text = cifar[cifar.index("### Compared with the paper"):]
    assert "](../../docs/fidelity.md)" in text  # relative to metrics/report/report.md
    from pathlib import Path

    assert (Path(__file__).resolve().parents[1] / "docs" / "fidelity.md").is_file()


def test_columns_measured_under_another_protocol_are_marked():
    from types import SimpleNamespace

    from pipeline.report import tables

    run = SimpleNamespace(dataset="cifar10", model="wrn34_10", run="otjr", epochs=100, record={"n": 100},
                          accuracy={"clean": 85.0, "pgd20": 55.0, "simba": 70.0})
    lines = tables.paper_comparison([run])
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert "SimBA †" in header and "PGD-20" in header and "PGD-20 †" not in header
    assert any(line.startswith("- † SimBA: the authors' SimBA") for line in lines)


def test_an_infinite_deepfool_median_is_written_not_a_crash():
    """DeepFool's record says median_l2 None where it fooled at most half its images (a degenerate model)."""
    deepfool = {"accuracy": 90.0, "n_correct": 9, "n": 10}
    runs = [RunResults("digits", name, {"n": 10, "clean": {"accuracy": 90.0, "n_correct": 9, "n": 10},
                                        "deepfool": {**deepfool, "median_l2": median}}, None, None, {})
            for name, median in (("otjr", None), ("pgd_at", 0.51234))]
    lines = tables.robustness(runs)
    assert lines[-1] == "DeepFool median L2 distance: otjr inf (at most half fooled), pgd_at 0.5123."


# ---------------------------------------------------------------------------- evaluation cost
#: run -> attack -> (image-forwards, image-backwards) of fake records of COST_N images; AutoAttack saw the first
#: COST_AA_N only. xe has no timing file; otjr's was written by 2 ranks.
COST_N, COST_AA_N = 50, 20
COST = {"pgd_at": {"pgd20": (700, 630), "autoattack": (3000, 900)},
        "otjr": {"pgd20": (600, 540), "autoattack": (2500, 700)},
        "xe": {"pgd20": (60, 10), "autoattack": (26, 5)}}
SECONDS = {"pgd_at": {"pgd20": 0.25, "autoattack": 4.5}, "otjr": {"pgd20": 0.5, "autoattack": 7.125}}


def cost_world():
    """Records with passes for COST's runs on digits, timing files for SECONDS's; returns the params to report."""
    for run, passes in COST.items():
        record = attack_record("digits", run, "small_cnn", {"clean": 90.0, "pgd20": 50.0, "autoattack": 45.0,
                                                            "worst_case": 44.0}, n=COST_N)
        record["autoattack"].update(n=COST_AA_N, n_correct=9)  # 45% of 20
        write(paths.attack_result("digits", run), with_passes(record, passes, clean_forward=COST_N))
    timing.write("attack", "digits", "pgd_at", device="cpu", seconds=SECONDS["pgd_at"])
    timing.write("attack", "digits", "otjr", device="cuda:0", ranks=2, devices=["cuda:0", "cuda:1"],
                 seconds=SECONDS["otjr"])
    return load_params().model_copy(update={"datasets": ("digits",), "runs": tuple(COST)})


def test_cost_table_shows_each_attacks_passes_per_image_and_the_suites_total(project):
    rows = table_rows(build_report(cost_world()).read_text(), "### Cost of the evaluation")
    header, body = rows[0], {r[0]: r[1:] for r in rows[1:]}
    assert header == ["Run", "PGD-20", "AutoAttack", "Total / image", "Total"]
    assert list(body) == list(COST)  # xe too, though it has no timing file
    for run, passes in COST.items():
        cost = {attack: forward + 2 * backward for attack, (forward, backward) in passes.items()}
        total = COST_N + sum(cost.values())  # the clean pass: one forward per image
        assert body[run] == [f"{cost['pgd20'] / COST_N:.1f}", f"{cost['autoattack'] / COST_AA_N:.1f}",
                             f"{total / COST_N:.1f}", str(total)]


def test_attack_seconds_are_device_seconds_in_the_timing_report_with_their_ranks(project):
    report = build_report(cost_world()).read_text()
    timed = (paths.timing_dir() / "report.md").read_text()
    rows = table_rows(timed, "### digits: attack time (device-seconds)")
    header, body = rows[0], {r[0]: r[1:] for r in rows[1:]}
    assert header == ["Run", "Devices", "Ranks", "PGD-20", "AutoAttack", "Total"]
    assert body == {"pgd_at": ["cpu", "1", "0.250", "4.500", f"{0.25 + 4.5:.3f}"],  # no `ranks`: one rank
                    "otjr": ["cuda:0, cuda:1", "2", "0.500", "7.125", f"{0.5 + 7.125:.3f}"]}  # xe: no timing file
    assert "7.125" not in report and "device-seconds are in [metrics/timing/report.md]" in report


def test_the_versioned_report_is_the_same_whatever_the_timing_files_say(project):
    params = cost_world()
    first = build_report(params).read_bytes()
    shutil.rmtree(paths.timing("attack", "digits", "otjr").parent)
    timing.write("attack", "digits", "xe", device="cuda:0", ranks=3, devices=["cuda:0", "cuda:1", "cuda:2"],
                 seconds={"pgd20": 9.0})
    assert build_report(params).read_bytes() == first
    assert "| xe | cuda:0, cuda:1, cuda:2 | 3 | 9.000 | 9.000 |" in (paths.timing_dir() / "report.md").read_text()
