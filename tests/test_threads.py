"""`threads` fixes torch's CPU threads per stage process, so a run's bits do not depend on the machine's
core count (OMP_NUM_THREADS); with `threads: 0` torch keeps its own default."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, write_params
from pipeline import api
from pipeline.config import load_params
from pipeline.core.io import load_tensors


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_every_api_stage_takes_its_threads_from_params(restore_threads):
    p = load_params(REPO / "params.yaml")
    assert p.threads == 1
    torch.set_num_threads(2)
    api._params(p)
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)
    api._params(p.model_copy(update={"threads": 0}))  # 0: torch's own setting stays
    assert torch.get_num_threads() == 2


def test_threads_must_be_a_whole_non_negative_number(tmp_path):
    from pipeline.core.errors import UserError

    write_params(tmp_path, {"threads": -1})
    with pytest.raises(UserError, match="threads"):
        load_params(tmp_path / "params.yaml")


def _train_weights(root, threads: int, omp: str) -> dict:
    root.mkdir()
    write_params(root, {"threads": threads, "train.epochs": 2, "train.eval_n": 16, "model.args.width": 8})
    env = {**os.environ, "PYTHONPATH": str(REPO), "OTJR_ROOT": str(root), "OMP_NUM_THREADS": omp}
    for stage in (["download"], ["preprocess"], ["train", "--method", "pgd_at"]):
        subprocess.run([sys.executable, "-m", "pipeline", "stage", stage[0], "--dataset", "digits", *stage[1:]],
                       cwd=root, env=env, check=True, capture_output=True)
    tensors, meta = load_tensors(root / "models" / "digits" / "pgd_at.safetensors")
    used = json.loads((root / "metrics" / "timing" / "train" / "digits" / "pgd_at.json").read_text())["threads"]
    return tensors, used


@pytest.mark.slow
def test_a_training_is_bit_identical_on_one_or_two_cores_with_threads_1(tmp_path):
    (one, used1), (two, used2) = (_train_weights(tmp_path / f"t1-omp{n}", 1, str(n)) for n in (1, 2))
    assert used1 == used2 == 1
    assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
    # threads 0 leaves torch's default (OMP_NUM_THREADS; test_every_api_stage_takes_its_threads_from_params). A
    # control training at threads 0 is left out: inside the full suite its process got one thread whatever
    # OMP_NUM_THREADS said, so neither its count nor its bits were a dependable contrast.
