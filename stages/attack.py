"""`otjr stage attack`: evaluate one trained model under the attack suite in params.yaml.

Under `torchrun --nproc-per-node G -m pipeline stage attack ...` the ranks share the images, block by block.
"""

from ._cli import DATASET, METHOD, SEED, one_line_errors


@one_line_errors
def attack(dataset: str = DATASET, method: str = METHOD, seed: int | None = SEED) -> None:
    from pipeline import api
    from pipeline.train.distributed import from_environment

    out = api.attack(dataset, method, seed=seed)
    if from_environment().main:  # under torchrun, rank 0 writes the record
        print(f"attacked {method}@{dataset} -> {out}")
