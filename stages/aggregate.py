"""`otjr stage aggregate`: metrics/summary.json and the paper-style table, printed."""

from ._cli import one_line_errors


@one_line_errors
def aggregate() -> None:
    from pipeline import api

    print(api.aggregate(), end="")
