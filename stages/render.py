"""`otjr dvc render`: write dvc.yaml from the registries (`--check`: only compare, exit 2 when it differs)."""

import typer

from ._cli import PLAIN_HELP, one_line_errors

dvc_app = typer.Typer(help="The DVC pipeline file, rendered from the registries.", no_args_is_help=True, **PLAIN_HELP)


@dvc_app.command("render")
@one_line_errors
def render(
    check: bool = typer.Option(False, "--check", help="compare the committed dvc.yaml with the render; exit 2 if it differs"),
) -> None:
    """Write dvc.yaml from the registries (runs, their params keys, each stage's imports)."""
    from pipeline import dvc_render

    current = dvc_render.write(check=check)
    print("dvc.yaml is up to date" if current else "dvc.yaml rendered")
