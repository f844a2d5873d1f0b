"""The user's original labels reach samples.csv and come back as class indices."""

import csv

import numpy as np

from mialens.workflows.audit import run_audit
from mialens.workflows.config import validate_config
from mialens.workflows.outputs import load_result

ORIGINAL = np.array([0, 1, 2, 1000])


def _audit(tmp_path, dataset: dict):
    raw = {
        "dataset": dataset,
        "model": {"arch": "mlp", "hidden": [8]},
        "train": {"epochs": 1},
        "audit": {"num_models": 2, "pool_size": 40, "bootstrap": 0, "attacks": ["loss"]},
    }
    out = tmp_path / "run"
    return run_audit(validate_config(raw), out), out


def _label_column(out) -> list[str]:
    with open(out / "samples.csv", newline="", encoding="utf-8") as fh:
        return [row["label"] for row in csv.DictReader(fh)]


def test_sparse_npz_labels_are_written_as_given(tmp_path):
    rng = np.random.default_rng(3)
    labels = ORIGINAL[rng.permutation(np.arange(60) % 4)]
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.normal(size=(60, 3)), y=labels, ids=rng.permutation(1000)[:60] + 7)
    result, out = _audit(tmp_path, {"name": "npz", "path": str(path)})
    assert set(result.labels.tolist()) == {0, 1, 2, 3}
    written = _label_column(out)
    assert set(written) == {"0", "1", "2", "1000"}
    np.testing.assert_array_equal(
        written[: len(result.labels)], ORIGINAL[result.labels].astype(str)
    )
    np.testing.assert_array_equal(load_result(out).labels, result.labels)


def test_string_csv_labels_are_written_and_read_back(tmp_path):
    rng = np.random.default_rng(4)
    names = np.array(["cat", "dog", "emu"])[np.arange(60) % 3]
    path = tmp_path / "t.csv"
    rows = [
        f"{n},{a:.4f},{b:.4f}" for n, (a, b) in zip(names, rng.normal(size=(60, 2)), strict=True)
    ]
    path.write_text("species,a,b\n" + "\n".join(rows) + "\n", encoding="utf-8")
    result, out = _audit(tmp_path, {"name": "csv", "path": str(path), "label_column": "species"})
    assert set(_label_column(out)) == {"cat", "dog", "emu"}
    np.testing.assert_array_equal(load_result(out).labels, result.labels)
