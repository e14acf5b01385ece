"""Everything the report shows, read from the pipeline's result files.

Any subset may be missing (a run not yet attacked, no analysis, no training log): the
report shows what exists and says what does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import paths, timing
from ..core.io import read_json
from ..methods import variants_from
from ..params import Params
from . import evidence
from .records import accuracies, read_dvclive, read_optional


@dataclass
class RunResults:
    """One (dataset, run): its attack record, sanity verdicts, analyses and training curves (each may be absent)."""

    dataset: str
    run: str
    record: dict[str, Any] | None
    sanity: dict[str, Any] | None
    analysis: dict[str, Any] | None
    curves: dict[str, list[tuple[int, float]]]
    external: bool = False  # evaluated with `otjr evaluate`: no training log of ours

    @property
    def accuracy(self) -> dict[str, float]:
        return accuracies(self.record) if self.record else {}

    @property
    def training(self) -> dict[str, Any]:
        return (self.analysis or {}).get("training", {})

    @property
    def timing(self) -> dict[str, Any]:
        """The training's wall times here (`core.timing`), with `seconds_per_epoch`; {} where none."""
        found = timing.read("train", self.dataset, self.run)
        per_epoch = found.get("epoch_seconds") or []
        return {**found, "seconds_per_epoch": sum(per_epoch) / len(per_epoch)} if per_epoch else {}

    @property
    def attack_timing(self) -> dict[str, Any]:
        """The attack stage's wall times here (`core.timing`): `seconds` per attack, summed over the ranks of a
        sharded run, which also states its `ranks` and `devices`; {} where none."""
        return timing.read("attack", self.dataset, self.run)

    @property
    def model(self) -> str | None:
        """Architecture name: from the attack record's training settings, else from the analysis."""
        settings = (self.record or {}).get("training", {})
        return settings.get("model", {}).get("name") or self.training.get("model")

    @property
    def epochs(self) -> int | None:
        settings = (self.record or {}).get("training", {})
        return settings.get("train", {}).get("epochs") or self.training.get("epochs")


@dataclass
class Results:
    datasets: tuple[str, ...]
    runs: tuple[str, ...]
    by_key: dict[tuple[str, str], RunResults]
    analyses: dict[str, dict[str, Any]] = field(default_factory=dict)  # dataset -> analysis JSON
    further_seeds: tuple[int, ...] = ()  # params `seeds`: the claims pool their paired tests over every seed
    white_box: tuple[str, ...] = ()  # the suite's white-box attacks (the claims' white-box worst case)
    variants: dict[str, str] = field(default_factory=dict)  # params `variants`: run -> method (their claims rows)

    def of(self, dataset: str) -> list[RunResults]:
        return [self.by_key[(dataset, r)] for r in self.runs if (dataset, r) in self.by_key]

    def missing(self) -> list[str]:
        """'what: run@dataset' for every expected result file that is absent."""
        out = []
        for (ds, run), r in self.by_key.items():
            for what, value in (("attack record", r.record), ("sanity verdicts", r.sanity),
                                ("analyses", r.analysis), ("training log", r.curves)):
                if not value and not (r.external and what == "training log"):
                    out.append(f"{what}: {run}@{ds}")
        return out


def collect(params: Params) -> Results:
    analyses = {}
    for ds in params.datasets:
        found = read_optional(paths.analysis_result(ds), "analysis result")
        if found:
            analyses[ds] = found
    by_key = {}
    for ds in params.datasets:
        for run in params.runs:
            by_key[(ds, run)] = RunResults(
                dataset=ds,
                run=run,
                record=read_optional(paths.attack_result(ds, run), "attack result"),
                sanity=read_optional(paths.sanity_result(ds, run), "sanity result"),
                analysis=analyses.get(ds, {}).get("runs", {}).get(run),
                curves=read_dvclive(paths.train_log_dir(ds, run)),
            )
    external = external_runs(params, analyses)
    by_key.update(external)
    runs = tuple(params.runs) + tuple(sorted({run for _, run in external} - set(params.runs)))
    white_box = tuple(evidence.white_box_attacks(params.attack.kinds))
    variants = variants_from(params.variants)
    return Results(tuple(params.datasets), runs, by_key, analyses, tuple(params.seeds), white_box, variants)


def external_runs(params: Params, analyses: dict[str, dict[str, Any]]) -> dict[tuple[str, str], RunResults]:
    """Models evaluated with `otjr evaluate`: attack records marked `external`, with their sanity and analyses.

    A dataset with no analysis file of its own takes its settings from an external model's.
    """
    found = {}
    for ds in params.datasets:
        folder = paths.attack_result(ds, "x").parent
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            record = read_json(path, what="attack result")
            if not record.get("external") or path.stem in params.runs:
                continue
            run = path.stem
            analysis = read_optional(paths.external_analysis(ds, run), "analysis result")
            if analysis and ds not in analyses:
                analyses[ds] = analysis
            found[(ds, run)] = RunResults(
                dataset=ds, run=run, record=record,
                sanity=read_optional(paths.sanity_result(ds, run), "sanity result"),
                analysis=(analysis or {}).get("runs", {}).get(run), curves={}, external=True)
    return found


def sanity_sweeps(sanity: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Accuracy sweeps found in the sanity verdicts: {'eps': {...}, 'steps': {...}} where present.

    A sweep is any rule's figures holding a list under 'eps' or 'steps' and an equally long
    list under 'accuracy' (rule 5's eps sweep; the paper's Table 10 step sweep when run).
    """
    found: dict[str, dict[str, Any]] = {}
    for rule in (sanity or {}).get("rules", []):
        figures = rule.get("figures") or {}
        acc = figures.get("accuracy")
        for axis in ("eps", "steps"):
            xs = figures.get(axis)
            if isinstance(xs, list) and isinstance(acc, list) and len(xs) == len(acc) and axis not in found:
                found[axis] = {"x": xs, "accuracy": acc, "chance": figures.get("chance"), "rule": rule.get("id"),
                               "n": figures.get("n")}
    return found
