"""`otjr stage analyze`: the paper's analyses (input gradients, activations, layer ratios, cross-sections) of every run on one dataset."""

from ._cli import DATASET, one_line_errors


@one_line_errors
def analyze(dataset: str = DATASET) -> None:
    from pipeline import api

    print(f"analysed {dataset} -> {api.analyze(dataset)}")
