"""`otjr stage preprocess`: raw files -> uint8 safetensors splits with metadata."""

from ._cli import DATASET, one_line_errors


@one_line_errors
def preprocess(dataset: str = DATASET) -> None:
    from pipeline import api

    print(f"prepared {dataset} -> {api.preprocess(dataset)}")
