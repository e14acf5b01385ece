"""`otjr stage download`: fetch a dataset's published files into data/raw/<dataset>."""

from ._cli import DATASET, one_line_errors


@one_line_errors
def download(dataset: str = DATASET) -> None:
    from pipeline import api

    print(f"downloaded {dataset} -> {api.download(dataset)}")
