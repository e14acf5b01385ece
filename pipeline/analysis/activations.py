"""Penultimate-layer activations (paper Figs. 2 and 8): the input of the model's final Linear layer.

Hooking the classifier head's input works for every registered architecture, whatever it
calls its layers, and checks itself: the hooked layer's output must be the model's logits.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import UserError


def final_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The last `nn.Linear` in module order: the classifier head of every registered model."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError(f"{type(model).__name__}: no nn.Linear layer to read penultimate activations from")
    return linears[-1]


def penultimate_features(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N, D) inputs of the final Linear layer for images `x` (eval mode, no grad)."""
    name, head = final_linear(model)
    captured: list[torch.Tensor] = []
    produced: list[torch.Tensor] = []

    def hook(module, inputs, output):
        captured.append(inputs[0].detach().flatten(1))
        produced.append(output.detach())

    handle = head.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                logits = model(x[i : i + batch_size])
                if not torch.equal(produced[-1], logits):
                    raise UserError(f"{type(model).__name__}: layer '{name}' is not the model's last layer "
                                    "(its output is not the logits)")
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(captured)


def channel_magnitudes(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, batch_size: int
                       ) -> dict[str, list]:
    """Mean |activation| per penultimate channel, clean and adversarial, sorted by the clean value (descending)."""
    clean = penultimate_features(model, x, batch_size).abs().mean(0)
    adv = penultimate_features(model, x_adv, batch_size).abs().mean(0)
    order = torch.argsort(clean, descending=True, stable=True)
    return {
        "layer": final_linear(model)[0],
        "channels": int(clean.numel()),
        "order": order.tolist(),
        "clean": clean[order].tolist(),
        "adversarial": adv[order].tolist(),
    }
