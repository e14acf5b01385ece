"""`otjr exp show`: DVC's experiments side by side: the params that differ, the headline numbers."""

import typer

from ._cli import PLAIN_HELP, one_line_errors

exp_app = typer.Typer(help="DVC experiments, readable.", no_args_is_help=True, **PLAIN_HELP)


@exp_app.command("show")
@one_line_errors
def show(width: int = typer.Option(120, "--width", min=40, help="the widest line to print")) -> None:
    """Experiments side by side: only the params that differ, then each run's clean, PGD-20, AutoAttack and
    worst-case accuracy with its 95% interval, and its sanity verdict (from `dvc exp show --json`)."""
    from pipeline.core import paths
    from pipeline.report.experiments import show as table

    print(table(paths.root(), width), end="")
