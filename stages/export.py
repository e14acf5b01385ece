"""`otjr export robustbench`: a run's results in RobustBench's model-info JSON format."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._cli import DATASET, PLAIN_HELP, one_line_errors, shown

export_app = typer.Typer(help="Write results in other tools' formats.", no_args_is_help=True, **PLAIN_HELP)


@export_app.command("robustbench")
@one_line_errors
def robustbench(
    dataset: str = DATASET,
    run: str = typer.Option(..., "--run", "-r", help="a pipeline run (otjr) or a name given to otjr evaluate"),
    out: Optional[Path] = typer.Option(None, help="output file (default metrics/robustbench/<dataset>/<threat>/<run>.json)"),
) -> None:
    """Clean and AutoAttack accuracy, eps, threat model and n as RobustBench model info (paper fields left empty)."""
    from pipeline import api

    path, notes = api.export_robustbench(dataset, run, out)
    print(f"exported {run}@{dataset} -> {shown(path)}")
    for note in notes:
        print(f"note: {note}")
