"""Shared option types and the error boundary: bad input becomes one line and exit code 2."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import typer

from pipeline.core.errors import UserError

DATASET = typer.Option(..., "--dataset", "-d", help="dataset name (see `otjr list`), e.g. digits")
METHOD = typer.Option(..., "--method", "--run", "-m",
                      help="the run: a method, optionally with an add-on: xe, pgd_at, otjr, trades-awp")
SEED = typer.Option(None, "--seed", min=0, help="the run's seed: `seed` in params.yaml (default) or a further one "
                    "of `seeds`, whose files go under <dataset>.seed<seed>/")


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
        try:
            return fn(*args, **kwargs)
        except _handled() as err:
            raise typer.Exit(_one_line(err)) from None

    return wrapper


def run(app: typer.Typer) -> None:
    """Run the command line; the top-level handler: any `UserError` that escapes a command is one line, exit 2."""
    try:
        app()
    except _handled() as err:
        sys.exit(_one_line(err))
