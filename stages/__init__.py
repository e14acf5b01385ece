"""The command line: `otjr stage <name>` runs one pipeline stage, exactly as dvc.yaml does.

Each stage is one thin Typer command in its own module: it parses identity arguments
(dataset, run, seed) and calls `pipeline.api`; so do `otjr evaluate` and `otjr export`.
`otjr preset`, `otjr bench` and `otjr dvc render` call their own modules (`pipeline.presets`,
`pipeline.benchmark`, `pipeline.dvc_render`), and so does `otjr stage code`, dvc.yaml's first stage,
which hashes each stage command's code (`pipeline.dvc_render.write_fingerprints`).
"""

from __future__ import annotations

import typer

from . import aggregate, attack, code, download, params, preprocess, preset, sanity, train
from . import analyze, report, sensitivity
from . import bench, docs, evaluate, exp, export, render, repro
from ._cli import PLAIN_HELP, run

app = typer.Typer(help="OTJR robustness pipeline.", no_args_is_help=True, add_completion=False, **PLAIN_HELP)
stage = typer.Typer(help="Run one pipeline stage (what `dvc repro` runs).", no_args_is_help=True, **PLAIN_HELP)
app.add_typer(stage, name="stage")

for module, fn in [
    (params, params.params),
    (code, code.code),
    (download, download.download),
    (preprocess, preprocess.preprocess),
    (train, train.train),
    (attack, attack.attack),
    (sanity, sanity.sanity),
    (aggregate, aggregate.aggregate),
    (analyze, analyze.analyze),
    (report, report.report),
    (sensitivity, sensitivity.sensitivity),
]:
    stage.command(fn.__name__, help=module.__doc__)(fn)


app.command("preset")(preset.preset)
app.command("repro")(repro.repro)
app.command("bench")(bench.bench)
app.command("evaluate", help=evaluate.__doc__)(evaluate.evaluate)
app.add_typer(export.export_app, name="export")
app.add_typer(render.dvc_app, name="dvc")
app.add_typer(exp.exp_app, name="exp")
app.add_typer(docs.docs_app, name="docs")


@app.command("list")
def list_registered() -> None:
    """Registered datasets, models, methods and attacks."""
    from pipeline.attacks import ATTACKS
    from pipeline.data import DATASETS
    from pipeline.methods import ADDONS, METHODS
    from pipeline.models import MODELS

    for title, reg in [("datasets", DATASETS), ("models", MODELS), ("methods", METHODS), ("add-ons", ADDONS),
                       ("attack kinds", ATTACKS)]:
        print(f"{title}: {', '.join(reg.names()) or '-'}" + (", timm/<architecture> (timm extra)" if reg is MODELS else ""))


def main() -> None:
    """The command line."""
    run(app)
