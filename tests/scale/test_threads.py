"""Same seed, same numbers, whatever torch's thread count: training and inference run on a
fixed number of threads (see mialens.models.training.fixed_threads)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mialens.models.training import TORCH_THREADS, fixed_threads
from mialens.workflows.audit import run_audit
from mialens.workflows.config import validate_config

SCRIPT = """
import json, sys
import numpy as np, torch
torch.set_num_threads(1)
from mialens.workflows.config import validate_config
from mialens.workflows.audit import run_audit
from mialens.models.training import TORCH_THREADS, fixed_threads
result = run_audit(validate_config(json.loads(sys.argv[1])))
np.savez(sys.argv[2], **{name: np.asarray(s) for name, s in result.scores.items()})
"""


def _config(ensemble):
    return {
        "dataset": {"name": "digits"},
        "model": {"hidden": [32]},
        "train": {"epochs": 2, "batch_size": 32, "dropout": 0.1},
        "audit": {"num_models": 2, "pool_size": 300, "bootstrap": 0, "attacks": ["loss"]},
        "executor": ensemble,
    }


@pytest.mark.parametrize(
    "ensemble", [{"ensemble": "off"}, {"ensemble": "on"}], ids=["one-by-one", "ensemble"]
)
def test_scores_do_not_depend_on_the_thread_count(ensemble, tmp_path, monkeypatch):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["MIALENS_CACHE_DIR"] = str(tmp_path / "one")
    out = tmp_path / "one.npz"
    subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(_config(ensemble)), str(out)],
        env=env,
        check=True,
    )
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(tmp_path / "two"))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        here = run_audit(validate_config(_config(ensemble)))
        assert torch.get_num_threads() == 2  # the caller's setting is restored
    finally:
        torch.set_num_threads(previous)
    there = np.load(out)
    for name, scores in here.scores.items():
        np.testing.assert_array_equal(scores, there[name], err_msg=name)


def test_fixed_threads_sets_and_restores():
    previous = torch.get_num_threads()
    with fixed_threads():
        assert torch.get_num_threads() == TORCH_THREADS
    assert torch.get_num_threads() == previous
