"""The report stage: metrics/report/report.md with its figures, and the data behind `dvc plots`."""

from __future__ import annotations

from pathlib import Path

from ..core import paths
from ..core.io import write_text
from ..params import Params
from . import evidence, figures, paper, tables
from .collect import Results, RunResults, collect, sanity_sweeps
from .plots_data import write_plot_data
from .records import load_flags
from .sizes import evaluated_on

PAPER_SETTINGS = ("cifar10 / cifar100 with wrn34_10 (Tables 2, 3, 6, 7) or wrn28_10 (Table 9); imagenet100 with "
                  "preact_resnet18 and intel with resnet50 (Table 4)")

ATTACK_SECONDS = ("Seconds each attack ran, summed over the ranks of a sharded run (device-seconds: one rank's are "
                  "its wall time), and the suite's total without the clean pass; their passes per image, the same on "
                  "every machine, are in the cost table of [metrics/report/report.md](../report/report.md).")


def figure_line(path: Path | None, caption: str) -> list[str]:
    if path is None:
        return []
    return [f"![{path.stem}](figures/{path.name})", "", f"*{caption}.*", ""]


def section(title: str, body: list[str], intro: str = "") -> list[str]:
    if not body:
        return []
    return [f"### {title}", ""] + ([intro, ""] if intro else []) + body + [""]


def describe_models(runs: list[RunResults]) -> str:
    seen = []
    for r in runs:
        key = (r.model, r.epochs)
        if r.model and key not in seen:
            seen.append(key)
    return "; ".join(f"{m}, {e} epochs" for m, e in seen) or "no trained model found"


def dataset_section(ds: str, results: Results, fig_dir: Path) -> list[str]:
    runs = results.of(ds)
    analysis = results.analyses.get(ds)
    lines = [f"## {ds}", "", f"Model: {describe_models(runs)}.", ""]
    first = next((r.record for r in runs if r.record), None)
    where = (f"Attacks: {evaluated_on(first)}, seed {first['seed']}, device {first['device']}."
             if first else "No attack record yet.")
    claims = evidence.claims_for(ds, results.runs, results.further_seeds, results.white_box, results.variants)
    lines += section("Claims of the paper, tested", evidence.claims_markdown(claims),
                     "Each of the paper's testable claims measured on this dataset's runs (one seed unless stated)."
                     if not results.further_seeds else
                     "Each of the paper's testable claims measured on this dataset's runs; the paired tests pool the "
                     f"first seed and the further seeds {', '.join(map(str, results.further_seeds))}. The tables "
                     "below are the first seed's (means over the seeds: metrics/summary.md, metrics/summary_stats.json).")
    lines += section("Robust accuracy (%), paper Table 2 layout", tables.robustness(runs), where)
    lines += section("95% intervals (%) of these accuracies", tables.robustness_intervals(runs),
                     "Clopper-Pearson (exact) over the n images attacked; Wilson intervals and the paired tests are in "
                     "metrics/summary_stats.json.")
    first_flags = {r.run: (load_flags(ds, r.run) or [None])[0] for r in runs if r.record}
    lines += section("Worst case per threat model", tables.threat_worst_case_table(runs, first_flags),
                     "The worst-case column above spans every ball of the suite at once (an image counts only if "
                     "it survives the L-inf and the L2 attacks alike); here each ball on its own: correct and robust "
                     "to every attack of that ball, on the images all of them saw (first seed).")
    lines += section("Cost of the evaluation", tables.evaluation_cost(runs),
                     "Forward-equivalent passes through the model per test image (a forward counts 1, a backward 2: "
                     "the record's `passes`), each attack's over the images it saw (first seed). Total / image: the "
                     "whole suite's with the clean pass, over all n evaluated images; Total: the same over all of "
                     "them. The counts are the same on every machine; each attack's device-seconds are in "
                     "[metrics/timing/report.md](../timing/report.md) (wall times, not versioned).")

    comparison = tables.paper_comparison(runs)
    fig = figures.paper_comparison(
        {r.run: ([c for c in row.values if c in r.accuracy], [r.accuracy[c] for c in row.values if c in r.accuracy],
                 [row.values[c] for c in row.values if c in r.accuracy]) for r, row in tables.paper_rows(runs)},
        fig_dir / f"{ds}_paper_comparison.png", f"{ds}: ours vs the paper")
    lines += ["### Compared with the paper", ""]
    if comparison:
        lines += ["Rows whose dataset, model and method match a paper table. Our n and epochs may differ from "
                  "the paper's full test set and schedule; every other difference from the authors' setup is "
                  f"listed in [{paper.FIDELITY_DOC}](../../{paper.FIDELITY_DOC}), and columns marked † were "
                  "measured under another protocol than the paper's.", ""] + comparison + [""]
        lines += figure_line(fig, "Ours (filled) against the paper (hollow), per attack")
    else:
        lines += [f"No run matches a paper setting ({PAPER_SETTINGS}).", ""]

    points = {r.run: (r.accuracy["clean"], r.accuracy["worst_case"]) for r in runs
              if "clean" in r.accuracy and "worst_case" in r.accuracy}
    theirs = {r.run: (row.values["clean"], row.values["autoattack"]) for r, row in tables.paper_rows(runs)}
    fig = figures.clean_vs_robust(points, fig_dir / f"{ds}_clean_vs_robust.png", f"{ds}: clean vs robust accuracy",
                                  "worst-case", theirs or None)
    lines += section("Clean vs robust accuracy", figure_line(
        fig, "Clean accuracy against the worst case over the attacks run" + (
            "; hollow: the paper's clean and AutoAttack accuracy" if theirs else "")))

    sweeps = {r.run: sanity_sweeps(r.sanity) for r in runs if sanity_sweeps(r.sanity)}
    otjr = next((r for r in runs if (r.dataset, r.model, r.run) == paper.SANITY_SETTING), None)
    paper_sweeps = {"eps": paper.SANITY_EPS, "steps": paper.SANITY_STEPS} if otjr else None
    fig = figures.accuracy_sweeps(sweeps, fig_dir / f"{ds}_sanity_sweeps.png", f"{ds}: PGD accuracy sweeps",
                                  paper_sweeps)
    compared = tables.sanity_sweep_comparison(runs)
    lines += section("Sanity checks (gradient masking)", tables.sanity(runs) + [""] + (compared + [""] if compared else [])
                     + figure_line(
        fig, "PGD accuracy as the budget grows (paper Table 10): it should fall to chance"))

    curves = {r.run: r.curves for r in runs if r.curves}
    fig = figures.training_curves(curves, fig_dir / f"{ds}_training_curves.png", f"{ds}: training curves")
    lines += section("Training curves (paper Fig. 7)", figure_line(
        fig, "Per epoch: each method's own objective, its CE on PGD examples where it has one, and clean / PGD "
             "accuracy on held-out images"))

    lines += section("Training time per epoch (paper Table 11)", [
        "Wall times vary from run to run, so this report (a function of the results, byte for byte) leaves them "
        "out: the report stage writes them to [metrics/timing/report.md](../timing/report.md), not versioned.", ""])

    if analysis:
        lines += analysis_section(ds, runs, analysis, fig_dir)
    else:
        lines += ["### Analyses", "", f"No analysis results for {ds} (run `otjr stage analyze --dataset {ds}`).", ""]
    return lines


def timing_section(ds: str, runs: list[RunResults], fig_dir: Path) -> list[str]:
    """Paper Table 11 from this machine's training wall times (`core.timing`), for metrics/timing/report.md."""
    seconds = {r.run: r.timing["seconds_per_epoch"] for r in runs if r.timing}
    if not seconds:
        return []
    devices = sorted({str(r.timing.get("device")) for r in runs if r.timing.get("device")})
    fig = figures.training_time(seconds, fig_dir / f"{ds}_training_time.png", f"{ds}: training time per epoch",
                                ", ".join(devices) or "device unknown")
    return section(f"{ds}: training time per epoch (paper Table 11)", tables.training_time(runs) + [""] + figure_line(
        fig, "Mean wall-clock seconds per training epoch (absolute times depend on the device and its load; "
             "compare the ratios)"))


def write_timing_report(params: Params, results: Results) -> Path:
    """metrics/timing/report.md: the training- and attack-time tables and figures, apart from the versioned report."""
    out_dir = paths.timing_dir()
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for stale in fig_dir.glob("*.png"):
        stale.unlink()
    lines = ["# Training and attack time on this machine", "",
             "Written by the report stage from metrics/timing/train/ and metrics/timing/attack/ (git-ignored: wall "
             "times vary run to run).", ""]
    for ds in params.datasets:
        runs = results.of(ds)
        lines += timing_section(ds, runs, fig_dir) or [f"No training of {ds} timed here.", ""]
        lines += section(f"{ds}: attack time (device-seconds)", tables.attack_seconds(runs), ATTACK_SECONDS) or [
            f"No attack of {ds} timed here.", ""]
    out = out_dir / "report.md"
    write_text(out, "\n".join(lines).rstrip() + "\n")
    return out


def analysis_section(ds: str, runs: list[RunResults], analysis: dict, fig_dir: Path) -> list[str]:
    s = analysis["settings"]
    analysed = [r for r in runs if r.analysis]
    lines = ["### Analyses", "",
             f"On the {analysis['subset']} (n = {analysis['n']}), seed {analysis['seed']}, device {analysis['device']}; "
             f"L-inf PGD with eps {s['eps']:.4g}, step {s['step']:.4g}"
             f"{', uniform random start' if s['random_start'] else ''}.", ""]
    lines += tables.analysis_summary(analysed) + [""]

    series = {r.run: (r.analysis["input_gradient"]["steps"], r.analysis["input_gradient"]["mean_abs"]) for r in analysed}
    theirs = {r.run: (list(paper.INPUT_GRADIENT_STEPS), [v * 1e-4 for v in paper.INPUT_GRADIENT[r.run]])
              for r in analysed if (r.dataset, r.model) == paper.INPUT_GRADIENT_SETTING and r.run in paper.INPUT_GRADIENT}
    fig = figures.input_gradients(series, fig_dir / f"{ds}_input_gradients.png",
                                  f"{ds}: input-gradient magnitude after PGD-k", theirs or None)
    lines += section("Input-gradient magnitude (paper Tables 5, 12)", tables.input_gradients(analysed) + [""]
                     + figure_line(fig, "E ||grad_x CE||_1 per pixel (inputs in [0, 1]) at the clean point and "
                                        "after k PGD steps; lower means weaker adversarial signal"))

    fig = figures.activations({r.run: r.analysis["activations"] for r in analysed},
                              fig_dir / f"{ds}_activations.png", f"{ds}: penultimate-layer activation magnitude")
    lines += section("Penultimate-layer activations (paper Figs. 2, 8)", figure_line(
        fig, f"Mean |activation| of each input channel of the final linear layer, clean and after PGD-{s['adv_steps']}, "
             "channels sorted by the clean magnitude"))

    fig = figures.layer_ratios({r.run: (r.analysis["layer_ratios"]["layers"], r.analysis["layer_ratios"]["mean"])
                                for r in analysed}, fig_dir / f"{ds}_layer_ratios.png",
                               f"{ds}: parameter-gradient ratio, adversarial / clean")
    lines += section("Per-layer gradient ratios (paper Figs. 4, 6)", figure_line(
        fig, f"Mean over {s['ratio_n']} test images of ||grad_theta_i CE(x_adv)|| / ||grad_theta_i CE(x)|| for each "
             f"conv / linear weight, PGD-{s['adv_steps']} examples; 1 = the layer sees no difference"))

    coords = analysis["cross_section_coordinates"]
    fig = figures.cross_sections({r.run: r.analysis["cross_sections"] for r in analysed}, coords,
                                 analysis["num_classes"], fig_dir / f"{ds}_cross_sections.png",
                                 f"{ds}: decision-boundary cross-sections")
    lines += section("Decision-boundary cross-sections (paper Fig. 9)", figure_line(
        fig, f"Predicted class on a {len(coords)} x {len(coords)} grid spanning +-{coords[-1]:.3g} (L2) along each "
             "run's own PGD direction (horizontal) and a shared random orthogonal direction (vertical); black: the "
             "image's own class. A larger black cell means a more robust model"))
    return lines


def sensitivity_section() -> list[str]:
    return ["## Hyper-parameter sensitivity (paper Table 8)", "",
            "Built from queued experiments, not by `dvc repro`: queue the sweep with `dvc exp run --queue -S ...`, run "
            "it with `dvc queue start`, then `otjr stage sensitivity` writes `metrics/sensitivity.md` (see README, "
            "'Analyses and report').", ""]


def settings_section(params: Params, results: Results) -> list[str]:
    a = params.analysis
    lines = ["## Settings and versions", "",
             f"Analyses (`analysis:` in params.yaml): n = {a.n} test images, PGD steps {list(a.grad_steps)} for input "
             f"gradients, PGD-{a.adv_steps} for activations and layer ratios, layer ratios on {a.ratio_n} images, "
             f"{a.cross_section.images} cross-sections per run on a {a.cross_section.resolution}-point grid. The "
             "default run keeps these small so the whole report costs seconds; raise them for paper-scale figures.", ""]
    missing = results.missing()
    if missing:
        lines += ["Not available when the report was built: " + "; ".join(missing) + ".", ""]
    versions = next((r.record["versions"] for r in results.by_key.values() if r.record), None)
    if versions:
        lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return lines + [""]


def build_report(params: Params) -> Path:
    """Write metrics/report/report.md, its figures, and metrics/plots/*.csv; returns the report's path."""
    results = collect(params)
    out_dir = paths.report_dir()
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for stale in fig_dir.glob("*.png"):
        stale.unlink()
    write_plot_data(results)
    external = [r for r in results.runs if r not in params.runs]
    evaluated = f"; evaluated with `otjr evaluate`: {', '.join(external)}" if external else ""
    lines = ["# OTJR pipeline report", "",
             f"Datasets: {', '.join(params.datasets)}. Runs: {', '.join(params.runs)}{evaluated}. Accuracies in percent; "
             "'-' = not measured. Regenerate with `dvc repro` (or `otjr stage report`).", ""]
    if params.eval_split == "val":
        lines += ["**Validation split** (`eval_split: val`): every attack, sanity check and analysis below ran on "
                  "images held out of the training split, to choose hyper-parameters; none of these numbers is a "
                  "test result.", ""]
    lines += ["Contents: " + ", ".join(f"[{ds}](#{ds})" for ds in params.datasets)
              + ", [hyper-parameter sensitivity](#hyper-parameter-sensitivity-paper-table-8)"
              + ", [settings and versions](#settings-and-versions).", ""]
    for ds in params.datasets:
        lines += dataset_section(ds, results, fig_dir)
    lines += sensitivity_section() + settings_section(params, results)
    out = out_dir / "report.md"
    write_text(out, "\n".join(lines).rstrip() + "\n")
    write_timing_report(params, results)
    return out
