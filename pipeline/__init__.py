"""OTJR robustness pipeline: datasets, models, methods, attacks, sanity checks and reports.

The typed function API is `pipeline.api`; the command line (`otjr`, `python -m pipeline`)
is the `stages` package, one thin Typer command per stage.
"""

__version__ = "0.1.0"
