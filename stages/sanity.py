"""`otjr stage sanity`: the gradient-masking sanity rules for one model."""

import typer

from ._cli import DATASET, METHOD, SEED, one_line_errors


@one_line_errors
def sanity(
    dataset: str = DATASET,
    method: str = METHOD,
    strict: bool = typer.Option(False, help="exit non-zero when any rule fails"),
    seed: int | None = SEED,
) -> None:
    from pipeline import api

    out, verdict = api.sanity(dataset, method, strict=strict, seed=seed)
    print(f"sanity {method}@{dataset}: {verdict} -> {out}")
