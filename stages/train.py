"""`otjr stage train`: train one method on one dataset with the shared trainer."""

import typer

from ._cli import DATASET, METHOD, SEED, one_line_errors


@one_line_errors
def train(
    dataset: str = DATASET,
    method: str = METHOD,
    resume: bool = typer.Option(True, help="continue from the last finished epoch of an interrupted run"),
    seed: int | None = SEED,
) -> None:
    from pipeline import api

    print(f"trained {method}@{dataset} -> {api.train(dataset, method, resume=resume, seed=seed)}")
