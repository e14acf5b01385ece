"""Shared option types and the error boundary: bad input becomes one line and exit code 2."""

from __future__ import annotations

import functools
import sys

import typer

DATASET = typer.Option(..., "--dataset", "-d", help="dataset name (see `otjr list`), e.g. digits")
METHOD = typer.Option(..., "--method", "-m", help="method, optionally with add-ons: xe, pgd_at, otjr, trades-awp")


def shown(path) -> str:
    """`path` relative to the working directory where it lies below it (as the user typed paths)."""
    from pathlib import Path

    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def one_line_errors(fn):
    """Print `UserError` (and invalid adversarial examples) as a single line, exit non-zero."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from pipeline.attacks.evaluate import InvalidAdversarial
        from pipeline.core.errors import UserError

        try:
            return fn(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise typer.Exit(err.exit_code) from None
        except InvalidAdversarial as err:
            print(f"error: {err}", file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper
