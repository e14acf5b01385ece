"""Atomic placing of training results, output permissions and the writability probe (in-process, fast)."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from conftest import write_params
from pipeline.core import io, paths
from pipeline.core.errors import UserError
from pipeline.train import results


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_get_the_umask_permissions(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        io.write_json(tmp_path / "a.json", {"x": 1})
        io.save_tensors(tmp_path / "b.safetensors", {"w": torch.zeros(2)})
    finally:
        os.umask(old)
    for name in ("a.json", "b.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_check_writable_names_the_folder(tmp_path):
    io.check_writable(tmp_path / "new" / "deep" / "out.json")  # creates missing folders
    assert (tmp_path / "new" / "deep").is_dir()
    (tmp_path / "blocked").write_text("a file where a folder should be")
    with pytest.raises(UserError, match="blocked.*cannot be written"):
        io.check_writable(tmp_path / "blocked" / "out.json")
    assert list((tmp_path / "new" / "deep").iterdir()) == []  # the probe leaves nothing


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*") if p.is_file()}


def _write_tree(folder, files):
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)


@pytest.mark.parametrize("exchange", [True, False])
def test_swap_in_replaces_a_folder_whole(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    final, new = tmp_path / "final", tmp_path / "new"
    _write_tree(final, {"metrics.json": "old", "plots/a.tsv": "old", "plots/gone.tsv": "old"})
    _write_tree(new, {"metrics.json": "new", "plots/a.tsv": "new"})
    io.swap_in(new, final)
    assert _tree(final) == {"metrics.json": "new", "plots/a.tsv": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def _commit_by_hand(dataset, run, logs: dict[str, str], weights: float):
    """A commit folder as `results.commit` leaves it when killed just after its rename."""
    done = paths.train_commit(dataset, run)
    _write_tree(done / results.LOGS, logs)
    io.save_tensors(done / results.CHECKPOINT, {"w": torch.full((2,), weights)})
    io.write_json(done / results.RECORD, {"logs": io.tree_digest(done / results.LOGS)})
    return done


@pytest.mark.parametrize("killed_after", ["commit", "checkpoint moved", "logs exchanged"])
def test_a_commit_interrupted_anywhere_is_completed_by_the_next_start(project, killed_after):
    final = paths.train_log_dir("digits", "xe")
    _write_tree(final, {"metrics.json": "old", "plots/metrics/loss.tsv": "old"})
    io.save_tensors(paths.checkpoint("digits", "xe"), {"w": torch.zeros(2)})
    io.save_tensors(paths.resume_state("digits", "xe"), {"x": torch.zeros(1)})
    new_logs = {"metrics.json": "new", "plots/metrics/loss.tsv": "new"}
    done = _commit_by_hand("digits", "xe", new_logs, 1.0)
    if killed_after in ("checkpoint moved", "logs exchanged"):
        os.replace(done / results.CHECKPOINT, paths.checkpoint("digits", "xe"))
    if killed_after == "logs exchanged":  # the commit folder now holds the old logs
        assert io._exchange(done / results.LOGS, final)

    logs_folder = results.begin("digits", "xe")
    assert _tree(final) == new_logs
    assert torch.equal(io.load_tensors(paths.checkpoint("digits", "xe"))[0]["w"], torch.ones(2))
    assert not done.exists() and not paths.resume_state("digits", "xe").exists()
    assert logs_folder.is_dir() and not any(logs_folder.iterdir())


def test_a_failed_training_leaves_the_previous_results_as_they_were(digits, monkeypatch):
    from pipeline.methods import parse_run
    from pipeline.config import load_params
    from pipeline.train import loop

    write_params(digits, {"train.epochs": 3, "model.args.width": 4, "train.eval_n": 8})
    loop.fit("digits", parse_run("xe"), load_params(), show_progress=False)
    before = {p: p.read_bytes() for p in (digits / "metrics").rglob("*") if p.is_file()}
    before[paths.checkpoint("digits", "xe")] = paths.checkpoint("digits", "xe").read_bytes()

    write_params(digits, {"train.epochs": 3, "model.args.width": 4, "train.eval_n": 8, "seed": 5})
    calls = []

    def fail_on_second_epoch(*args, **kwargs):
        calls.append(kwargs["epoch"])
        if kwargs["epoch"] == 2:
            raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(loop, "save_state", fail_on_second_epoch)
    with pytest.raises(RuntimeError, match="simulated"):
        loop.fit("digits", parse_run("xe"), load_params(), show_progress=False)
    assert calls == [1, 2]
    after = {p: p.read_bytes() for p in (digits / "metrics").rglob("*") if p.is_file()}
    after[paths.checkpoint("digits", "xe")] = paths.checkpoint("digits", "xe").read_bytes()
    assert after == before
    assert not paths.lock_file("train", "digits", "xe").exists()  # released on the way out
    assert json.loads((paths.train_log_dir("digits", "xe") / "metrics.json").read_text())["step"] == 2
