"""`otjr docs render`: write docs/reference.md from the typed params and the registries (`--check`: only compare)."""

import typer

from ._cli import PLAIN_HELP, one_line_errors

docs_app = typer.Typer(help="The generated reference (docs/reference.md).", no_args_is_help=True, **PLAIN_HELP)


@docs_app.command("render")
@one_line_errors
def render(
    check: bool = typer.Option(False, "--check", help="compare the committed docs/reference.md with the render; "
                               "exit 2 if it differs"),
) -> None:
    """Write docs/reference.md: params (type, default, description, params.yaml comment), datasets, models,
    methods, add-ons, attacks, sanity rules and the attack record's keys."""
    from pipeline import reference  # imports torch (the registries): the other commands of `otjr` do not

    current = reference.write(check=check)
    print("docs/reference.md is up to date" if current else "docs/reference.md rendered")
