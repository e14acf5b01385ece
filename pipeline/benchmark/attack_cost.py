"""What one test image costs an attack of the suite when no iteration fools it (the upper bound of a row)."""

from __future__ import annotations


def robust_example_cost(params, num_classes: int, pixels: int) -> dict[str, int]:
    """Forward-equivalents an example costs when every iteration runs (it is never fooled).

    From the budgets in params.yaml: a gradient step is one forward and one backward (3),
    a query one forward, FAB's untargeted step needs all class gradients (2 + 2C), FAB runs
    a 10% prefix before the full run, FAB-T attacks its top target then the rest.
    """
    s = params.attack.settings
    out = {}
    for name in params.attack.suite:
        p, kind = s[name], params.attack.kinds[name]
        if kind == "fgsm":
            cost = 3 + 1
        elif kind in ("pgd", "mim", "cw_inf"):
            cost = 3 * p.steps + 1
        elif kind == "fab":
            cost = int(1.1 * p.steps) * (2 + 2 * num_classes)
        elif kind == "fab_t":
            cost = int(1.1 * p.steps) * 4 * min(p.n_target_classes, num_classes - 1)
        elif kind == "square":
            cost = p.queries
        elif kind == "simba":
            cost = 2 * min(p.max_iters, pixels)
        elif kind == "autoattack":
            targets = min(p.n_target_classes, num_classes - 1)
            cost = 3 * p.steps + 3 * p.steps * targets + int(1.1 * p.steps) * 4 * targets + p.square_queries
        elif kind == "deepfool":
            cost = 5 * (1 + 2 * num_classes)  # a handful of steps: it runs until the boundary, not to eps
        else:
            continue
        out[name] = cost
    return out
