"""`otjr preset <name>`: write one of the paper's experiments to params.yaml, ready for `dvc exp run`."""

import typer

from ._cli import one_line_errors


@one_line_errors
def preset(
    name: str = typer.Argument("", help="preset name; leave out to list them"),
) -> None:
    """Write preset NAME (presets/NAME.yaml over the files it extends, down to presets/default.yaml) to params.yaml."""
    from pipeline import dvc_render, presets

    if not name:
        for n in presets.names():
            print(f"{n:30s} {presets.describe(n)}")
        return
    out = presets.apply(name)
    dvc_render.write()  # its train stages follow the runs the preset evaluates
    print(f"wrote {out} from preset {name} and dvc.yaml's stages for its runs; now run `dvc exp run` (or `dvc repro`)")
