"""Progress in logs (output not a terminal): a line when a task starts, per epoch or attack, and never a long
silence; none at all when switched off."""

from __future__ import annotations

import io

from pipeline.core import progress as progress_module
from pipeline.core.progress import Lines, progress


def test_lines_per_update_and_per_advance_once_the_interval_passed(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    bar = Lines(every=5.0, out=out)
    task = bar.add_task("train xe@digits", total=6, info="")
    bar.advance(task)  # 0 s since the last line: quiet
    clock[0] += 6
    bar.advance(task)  # 6 s: a line
    bar.advance(task)
    bar.update(task, info="epoch 1/2 loss 0.500")  # an epoch ends: a line whatever the time
    bar.update(task, advance=3, info="pgd20 done")
    assert out.getvalue().splitlines() == ["train xe@digits: started", "train xe@digits: 2/6",
                                           "train xe@digits: 3/6 epoch 1/2 loss 0.500",
                                           "train xe@digits: 6/6 pgd20 done"]


def test_lines_when_not_a_terminal_and_nothing_when_switched_off(capsys):
    with progress(None) as bar:  # pytest's captured stderr is no terminal
        bar.update(bar.add_task("attack xe@digits", total=2, info=""), advance=1, info="fgsm done")
    assert capsys.readouterr().out.splitlines() == ["attack xe@digits: started", "attack xe@digits: 1/2 fgsm done"]
    with progress(False) as bar:
        bar.advance(bar.add_task("x", total=1))
    assert capsys.readouterr().out == ""
