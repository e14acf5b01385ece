"""`otjr stage report`: metrics/report/report.md with figures, paper comparisons and the data behind `dvc plots`."""

from ._cli import one_line_errors


@one_line_errors
def report() -> None:
    from pipeline import api

    print(f"report -> {api.report()}")
