"""`otjr preset <name>`: write one of the paper's experiments to params.yaml, ready for `dvc exp run`."""

import typer

from ._cli import one_line_errors


@one_line_errors
def preset(
    name: str = typer.Argument("", help="preset name; leave out to list them"),
) -> None:
    """Write preset NAME (presets/NAME.yaml merged onto presets/paper.yaml) to params.yaml."""
    from pipeline import presets

    if not name:
        for n in presets.names():
            print(f"{n:30s} {presets.describe(n)}")
        return
    out = presets.apply(name)
    print(f"wrote {out} from preset {name}; now run `dvc exp run` (or `dvc repro`)")
