"""Benchmark: the exact Jacobian penalty's weight gradient by forward-over-reverse instead of double backward.

The penalty is P = C/B ||g||^2 with g = d(sum_i directions_i . f(x)_i)/dx. Its weight
gradient (2C/B) (dg/dtheta)^T g is also the weight gradient of the directional derivative
of G = sum_i directions_i . f(x)_i along v = g (held constant), a forward-mode JVP:

    P_fr = C/B * (2 <dG/dx, v> - ||v||^2),   v = g detached,

whose value is P and whose weight gradient is P's (exact, no approximation). It costs a
reverse pass for g (no graph kept), a forward pass carrying tangents, and the reverse pass
through that, instead of a backward with `create_graph` and the reverse pass through it.

torch 2.14's forward-mode formula for train-mode batch norm is not differentiable in
reverse mode: the weight gradient through it is wrong (`check` shows it; the value is
right). So the JVP pass runs batch norm as elementwise ops (`DecomposedBatchNorm`), which
makes the gradient exact. Printed: the float64 agreement with today's double backward, and
the step times of PGD-AT, OTJR with today's penalty and OTJR by forward-over-reverse on
the trainer's step, interleaved in one run (so machine load hits all three alike).

    OMP_NUM_THREADS=1 python bench/jacobian_forward_over_reverse.py [--steps 10] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.losses import jacobian_penalty  # noqa: E402
from pipeline.methods.jacobian import CleanPass, Exact  # noqa: E402
from pipeline.core.passes import batch_statistics_only  # noqa: E402


class DecomposedBatchNorm(TorchFunctionMode):
    """Train-mode `F.batch_norm` as mean / variance / affine elementwise ops (same function)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
            a = {**dict(zip(names, args)), **kwargs}
            if a.get("training", False):
                x = a["input"]
                dims = [0, *range(2, x.dim())]
                mean = x.mean(dims, keepdim=True)
                var = (x - mean).pow(2).mean(dims, keepdim=True)  # biased, as batch norm normalises
                shape = [1, -1] + [1] * (x.dim() - 2)
                y = (x - mean) * torch.rsqrt(var + a.get("eps", 1e-5))
                w, b = a.get("weight"), a.get("bias")
                return y * (w.view(shape) if w is not None else 1) + (b.view(shape) if b is not None else 0)
        return func(*args, **kwargs)


def forward_over_reverse_penalty(model, inputs: torch.Tensor, outputs: torch.Tensor, directions: torch.Tensor,
                                 decompose_batchnorm: bool = True) -> torch.Tensor:
    """`jacobian_penalty`'s value and weight gradient, the weight term by a JVP along the input gradient."""
    batch, classes = outputs.shape
    dirs = directions.detach()
    (g,) = torch.autograd.grad((outputs * dirs).sum(), inputs, retain_graph=True)
    v = g.detach()
    mode = DecomposedBatchNorm() if decompose_batchnorm else contextlib.nullcontext()
    with batch_statistics_only(model), mode, fwAD.dual_level():
        tangent = fwAD.unpack_dual(model(fwAD.make_dual(inputs.detach(), v))).tangent
    return classes / batch * (2 * (tangent * dirs).sum() - v.pow(2).sum())


@dataclass(frozen=True)
class ForwardOverReverse:
    """A Jacobian mode for the methods (like `Exact`): the clean pass, then the penalty by forward-over-reverse."""

    double_backward = False

    def clean_pass(self, model, x: torch.Tensor) -> CleanPass:
        x_req = x.detach().clone().requires_grad_(True)
        logits = model(x_req)
        return CleanPass(logits, lambda d: forward_over_reverse_penalty(model, x_req, logits, d))


def weight_gradients(model, loss: torch.Tensor) -> list[torch.Tensor]:
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def check(model, x: torch.Tensor, directions: torch.Tensor, decompose_batchnorm: bool = True) -> dict[str, float]:
    """Largest relative error, per parameter tensor, of forward-over-reverse against double backward."""
    xr = x.detach().clone().requires_grad_(True)
    out = model(xr)
    exact = jacobian_penalty(xr, out, directions)
    g_exact = weight_gradients(model, exact + out.sum())
    xr = x.detach().clone().requires_grad_(True)
    out = model(xr)
    fr = forward_over_reverse_penalty(model, xr, out, directions, decompose_batchnorm)
    g_fr = weight_gradients(model, fr + out.sum())
    err = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-300)) for a, b in zip(g_fr, g_exact))
    return {"value_exact": float(exact.detach()), "value_fr": float(fr.detach()), "gradient_rel_error": err}


def time_steps(batch_size: int, steps: int, model_args: dict) -> dict[str, float]:
    from pipeline.methods import METHODS, Setup
    from pipeline.models import create
    from pipeline.config import load_params
    from pipeline.core.pgd import Adversary
    from pipeline.train.sgd import SGD
    from pipeline.train.step import Step

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 3, 32, 32, generator=g, device="cpu")
    y = torch.randint(0, 10, (batch_size,), generator=g, device="cpu")
    cases = {"pgd_at": ("pgd_at", Exact()), "otjr (double backward)": ("otjr", Exact()),
             "otjr (forward-over-reverse)": ("otjr", ForwardOverReverse())}
    runs = {}
    for label, (method, mode) in cases.items():
        torch.manual_seed(0)
        model = create("wrn34_10", num_classes=10, **model_args)
        m = METHODS.get(method)(params.for_method(method), Setup(Adversary(8 / 255, 2 / 255, 10), 10, mode))
        step = Step(model, SGD(model.parameters(), lr=0.1, momentum=0.9), m)
        step.start_epoch(0, 0.1)
        runs[label] = (step, [])
    for r in range(steps + 1):
        for step, times in runs.values():
            tic = time.process_time()
            step(x, y)
            if r:  # the first round warms up
                times.append(time.process_time() - tic)
    return {label: 1e3 * statistics.median(times) for label, (_, times) in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    from pipeline.models import create

    torch.manual_seed(0)
    for name, kw, shape in (("small_cnn", {"width": 4}, (1, 8, 8)), ("wrn34_10", {"depth": 10, "widen": 1}, (3, 16, 16))):
        model = create(name, num_classes=10, in_channels=shape[0], **kw).double().train()
        x = torch.rand(8, *shape, dtype=torch.float64)
        d = F.normalize(torch.randn(8, 10, dtype=torch.float64), dim=1)
        print(f"{name} float64: decomposed batch norm {check(model, x, d)}; "
              f"torch's batch norm {check(model, x, d, decompose_batchnorm=False)}")
    ms = time_steps(args.batch_size, args.steps, {"depth": 10, "widen": 2})
    print(f"WRN-10-2 3x32x32, batch {args.batch_size}, PGD-10, fp32, {torch.get_num_threads()} thread(s), "
          f"median CPU ms per step of {args.steps}:")
    for label, value in ms.items():
        print(f"  {label}: {value:.0f} ms ({value / ms['pgd_at']:.2f} x PGD-AT)")


if __name__ == "__main__":
    main()
