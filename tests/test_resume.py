"""A training run killed with SIGKILL resumes from its last epoch and ends bit-identical (CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch

from conftest import REPO, wait_for_file, write_params
from pipeline.core import paths
from pipeline.core.io import load_tensors

EPOCHS = 5
SETTINGS = {"train.epochs": EPOCHS, "train.eval_n": 16, "model.args.width": 8}


def _env(root):
    return {**os.environ, "PYTHONPATH": str(REPO), "OTJR_ROOT": str(root), "OMP_NUM_THREADS": "1"}


def _train(root, method: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", "stage", "train", "--dataset", "digits",
                             "--method", method], cwd=root, env=_env(root),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _prepare(root):
    write_params(root, SETTINGS)
    for stage in ("download", "preprocess"):
        subprocess.run([sys.executable, "-m", "pipeline", "stage", stage, "--dataset", "digits"], cwd=root,
                       env=_env(root), check=True, capture_output=True)


def _weights(root, method):
    return load_tensors(root / "models" / "digits" / f"{method}.safetensors")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["otjr"])
def test_sigkill_then_resume_is_bit_identical(tmp_path, method):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for root in (straight, killed):
        root.mkdir()
        _prepare(root)

    proc = _train(straight, method)
    assert proc.wait() == 0, proc.stderr.read()

    proc = _train(killed, method)
    state = killed / "models" / "digits" / f"{method}.resume.safetensors"
    wait_for_file(state, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _, meta = load_tensors(state)
    assert 1 <= meta["epoch"] < EPOCHS
    assert not (killed / "models" / "digits" / f"{method}.safetensors").exists()

    proc = _train(killed, method)
    assert proc.wait() == 0, proc.stderr.read()
    assert not state.exists()

    a, meta_a = _weights(straight, method)
    b, meta_b = _weights(killed, method)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the per-epoch log is complete after the resume, and identical apart from wall time
    strip = lambda hist: [{k: v for k, v in r.items() if k != "seconds"} for r in hist]
    assert len(meta_b["final"]) and meta_b["final"]["epoch"] == EPOCHS
    assert strip([meta_a["final"]]) == strip([meta_b["final"]])
    tsv = (killed / "metrics" / "train" / "digits" / method / "plots" / "metrics" / "train" / "loss.tsv").read_text()
    assert len(tsv.strip().splitlines()) == EPOCHS + 1  # header + one row per epoch
    logs = lambda root: {p.relative_to(root): p.read_bytes() for p in (root / "metrics" / "train").rglob("*")
                         if p.is_file()}
    assert logs(killed) == logs(straight)  # metrics.json and every plot file byte-identical


def test_resume_state_from_other_settings_is_ignored(digits):
    """A leftover state whose fingerprint differs (params changed) must not be resumed."""
    from pipeline.methods import parse_run
    from pipeline.config import load_params
    from pipeline.train.loop import fit

    write_params(digits, {"train.epochs": 2, "model.args.width": 4, "train.eval_n": 0})
    fit("digits", parse_run("xe"), load_params(), show_progress=False)
    reference = load_tensors(paths.checkpoint("digits", "xe"))[0]

    # plant a foreign resume state claiming epoch 1 of 2, then train again with resume on
    from pipeline.core.io import save_tensors

    save_tensors(paths.resume_state("digits", "xe"), {"module.model.x": torch.zeros(1)},
                 {"format": "otjr-resume-2", "fingerprint": "other", "epoch": 1, "history": [], "meta": {}})
    fit("digits", parse_run("xe"), load_params(), show_progress=False)
    again = load_tensors(paths.checkpoint("digits", "xe"))[0]
    for k in reference:
        assert torch.equal(reference[k], again[k]), k
