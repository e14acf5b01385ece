"""Models: a registry of architectures (normalisation inside) and safetensors checkpoints."""

from . import preact_resnet, resnet, small_cnn, strided_cnn, wide_resnet  # noqa: F401  (registration)
from .checkpoint import build, checkpoint_info, load_checkpoint, model_spec, read_checkpoint, save_checkpoint
from .registry import MODELS, Classifier, Normalize, create

__all__ = [
    "MODELS", "Classifier", "Normalize", "create", "build", "model_spec",
    "save_checkpoint", "load_checkpoint", "read_checkpoint", "checkpoint_info",
]
