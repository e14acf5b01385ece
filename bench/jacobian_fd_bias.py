"""Benchmark: bias of the finite-difference Jacobian penalty (`speed.jacobian: finite_difference`) against the exact one.

For each model and step h, OTJR's objective is evaluated twice on the same batch, with the
same PGD examples and the same projections: once with the exact penalty (double
backward), once with the finite difference, both in fp32 on the trainer's path. Printed:
the relative error of the penalty's value, and of the gradient of the whole OTJR objective
in the weights (what training follows), with their cosine. Models: small_cnn trained a few epochs by OTJR on the embedded digits
(real data, a trained network) and, if asked, a WRN at 32x32 on random data.

    OMP_NUM_THREADS=1 python bench/jacobian_fd_bias.py [--steps 1e-2 1e-3 1e-4] [--wrn]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.methods import METHODS, Setup  # noqa: E402
from pipeline.methods.jacobian import Exact, FiniteDifference  # noqa: E402
from pipeline.core.pgd import Adversary  # noqa: E402


def trained_digits_model(root: Path) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """small_cnn after 4 epochs of OTJR on digits (default params), and 64 training images."""
    from ruamel.yaml import YAML

    os.environ["OTJR_ROOT"] = str(root)
    yaml = YAML(typ="safe", pure=True)
    params = yaml.load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["train"].update(epochs=4, eval_n=0)
    with open(root / "params.yaml", "w") as f:
        yaml.dump(params, f)
    from pipeline import api
    from pipeline.data.prepare import load_split_uint8
    from pipeline.models import load_checkpoint

    api.download("digits")
    api.preprocess("digits")
    model = load_checkpoint(api.train("digits", "otjr")).train()
    x, y = load_split_uint8("digits", "train", limit=64)
    return model, x[:64].float() / 255, y[:64]


def compare(model, x, y, params, steps: list[float], label: str) -> None:
    adversary = Adversary(params.adversary.eps, params.adversary.step, params.adversary.steps)
    weights = list(model.parameters())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        classes = model.eval()(x[:2]).shape[1]
    otjr = params.for_method("otjr")

    def run(jacobian, **weights_of_terms):
        model.load_state_dict(state)  # the same BN statistics (the attack runs in eval mode) for every evaluation
        model.train()
        settings = otjr.model_copy(update=weights_of_terms)
        method = METHODS.get("otjr")(settings, Setup(adversary, classes, jacobian))
        torch.manual_seed(0)  # the same PGD start and projections
        loss = method.objective(model, x, method.adversarial(model, x, y), y)
        total = torch.autograd.grad(loss.total, weights)
        return loss.terms["jacobian"], torch.cat([g.reshape(-1) for g in total])

    exact_value, exact_grad = run(Exact())
    _, ce_sw_grad = run(Exact(), lambda_j=0.0)  # what the penalty adds to the gradient, at lambda_J = 1
    _, exact_pen = run(Exact(), lambda_j=1.0)
    exact_pen = exact_pen - ce_sw_grad
    print(f"\n{label}: exact penalty {float(exact_value):.5g} (fp32), lambda_J {otjr.lambda_j}")
    print("| h | penalty rel. error | its weight gradient: rel. error | cosine | OTJR gradient: rel. error | cosine |")
    print("|---:|---:|---:|---:|---:|---:|")
    for h in steps:
        value, grad = run(FiniteDifference(h))
        _, pen = run(FiniteDifference(h), lambda_j=1.0)
        pen = pen - ce_sw_grad
        rel = float(value / exact_value - 1)
        cells = [f"{h:.0e}", f"{rel:+.1e}"]
        for a, b in ((pen, exact_pen), (grad, exact_grad)):
            cells += [f"{float((a - b).norm() / b.norm()):.1e}", f"{float(F.cosine_similarity(a, b, dim=0)):.4f}"]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=float, nargs="+", default=[1e-1, 1e-2, 1e-3, 1e-4, 1e-5])
    parser.add_argument("--wrn", action="store_true", help="also a WRN-10-2 at 32x32 on random data")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from pipeline.config import load_params

    with tempfile.TemporaryDirectory() as tmp:
        model, x, y = trained_digits_model(Path(tmp))
        params = load_params(Path(tmp) / "params.yaml")
        compare(model, x, y, params, args.steps, "small_cnn (width 16), trained 4 epochs by OTJR on digits, batch 64")
    if args.wrn:
        from pipeline.models import create

        torch.manual_seed(0)
        model = create("wrn34_10", num_classes=10, in_channels=3, depth=10, widen=2).train()
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g)
        compare(model, x, y, params, args.steps, "WRN-10-2 at initialisation, 32x32 random images, batch 32")


if __name__ == "__main__":
    main()
