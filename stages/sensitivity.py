"""`otjr stage sensitivity`: the hyper-parameter table (paper Table 8) from queued `dvc exp run` experiments.

Run by hand after `dvc queue start` has finished (see README); not a dvc.yaml stage, since
it reads experiments, not workspace files.
"""

from pathlib import Path
from typing import Optional

import typer

from ._cli import one_line_errors


@one_line_errors
def sensitivity(
    exp_json: Optional[Path] = typer.Option(
        None, "--exp-json", help="saved output of `dvc exp show --json` (default: run it now)"),
) -> None:
    from pipeline import api

    print(api.sensitivity(exp_json), end="")
