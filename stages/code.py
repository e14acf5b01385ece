"""`otjr stage code`: hash the files each stage command imports into metrics/code/<command>.md5
(a training's: train-<run>.md5, the trainer with its run's method and add-on).

dvc.yaml's first stage. Each later stage depends on its command's file alone, so DVC re-runs a
stage exactly when code it imports changed, with one lock entry instead of one per source file.
"""

from ._cli import one_line_errors


@one_line_errors
def code() -> None:
    from pipeline import dvc_render

    written = dvc_render.write_fingerprints()
    print(f"code: {len(written)} of {len(dvc_render.fingerprinted())} fingerprints changed")
