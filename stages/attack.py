"""`otjr stage attack`: evaluate one trained model under the attack suite in params.yaml."""

from ._cli import DATASET, METHOD, SEED, one_line_errors


@one_line_errors
def attack(dataset: str = DATASET, method: str = METHOD, seed: int | None = SEED) -> None:
    from pipeline import api

    print(f"attacked {method}@{dataset} -> {api.attack(dataset, method, seed=seed)}")
