"""The shared trainer: LR schedule, on-device batches, the training step, resume state; `loop.fit` trains a run.

The training adversary (`Adversary`, PGD) and the frozen / batch-statistics-only passes
live on the ground floor (`pipeline.core.pgd`, `pipeline.core.passes`): the methods below
the trainer use them too.
"""
