"""`otjr stage params`: check params.yaml as the stages read it; dvc.yaml's first stage.

Every other stage depends on its output, metrics/params.ok, whose text never changes: under
`dvc repro` and `dvc exp run -S key=value`, bad params are one line and exit 2 here, before
DVC deletes any stage's outputs, and valid params re-run nothing.
"""

from ._cli import one_line_errors


@one_line_errors
def params() -> None:
    from pipeline import api

    api.check_params()
    print("params: params.yaml is valid")
