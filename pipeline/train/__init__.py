"""The shared trainer: training adversary, LR schedule, on-device batches, resume state.

`fit` lives in `pipeline.train.loop` (imported on use: methods import the adversary from here).
"""

from .adversary import Adversary, frozen, pgd_linf


def fit(*args, **kwargs):
    from .loop import fit as _fit

    return _fit(*args, **kwargs)


__all__ = ["Adversary", "frozen", "pgd_linf", "fit"]
