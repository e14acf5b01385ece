"""Models from elsewhere: evaluate external checkpoints and RobustBench zoo models, export to RobustBench."""

from .evaluate import Source, evaluate_external, external_subject
from .export import export_robustbench

__all__ = ["Source", "evaluate_external", "external_subject", "export_robustbench"]
