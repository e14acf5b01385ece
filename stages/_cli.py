"""Shared option types and the error boundary: bad input becomes one line and exit code 2."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import typer

from pipeline.core.errors import UserError

#: Every command group's help: click's plain text (wrapped to the terminal, defaults whole, no `<bool>`
#: metavars), not rich's boxes.
PLAIN_HELP = {"rich_markup_mode": None}
DATASET = typer.Option(..., "--dataset", "-d", metavar="NAME", help="dataset name (see `otjr list`), e.g. digits")
METHOD = typer.Option(..., "--method", "--run", "-m", metavar="RUN",
                      help="the run: a method, optionally with an add-on: xe, pgd_at, otjr, trades-awp")
SEED = typer.Option(None, "--seed", min=0, metavar="SEED", help="the run's seed: `seed` in params.yaml (default) or a "
                    "further one of `seeds`, whose files go under <dataset>.seed<seed>/")


def _one_line(err: Exception) -> int:
    """Print `err` as one line on stderr; return the exit code (2 for bad input)."""
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    print(f"error: {text}", file=sys.stderr)
    return err.exit_code if isinstance(err, UserError) else 1


def _handled():
    from pipeline.core.errors import InvalidAdversarial

    return UserError, InvalidAdversarial


def shown(path) -> str:
    """`path` relative to the working directory where it lies below it (as the user typed paths)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def one_line_errors(fn):
    """Print `UserError` (exit 2) and invalid adversarial examples (exit 1) as a single line."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from pipeline.core.errors import UserError
        from pipeline.core.io import disk_full

        try:
            return fn(*args, **kwargs)
        except _handled() as err:
            raise typer.Exit(_one_line(err)) from None
        except OSError as err:  # a full disk outside the atomic writers (a training's logs): one line too
            if not disk_full(err):
                raise
            raise typer.Exit(_one_line(UserError(f"{err.filename or 'output'}: cannot be written: no space left "
                                                 "on device; free some and re-run"))) from None

    return wrapper


def run(app: typer.Typer) -> None:
    """Run the command line; the top-level handler: any `UserError` that escapes a command is one line, exit 2."""
    try:
        app()
    except _handled() as err:
        sys.exit(_one_line(err))
