"""analysis/samples.csv writes the user's original labels, as the audit's samples.csv does."""

import csv

import numpy as np

from mialens.data.dataset import original_labels
from mialens.workflows.audit import run_audit
from mialens.workflows.config import validate_config


def _labels(path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["sample_id"]: row["label"] for row in csv.DictReader(fh)}


def test_analysis_table_has_the_auditsoriginal_labels(tmp_path):
    rng = np.random.default_rng(5)
    original = np.array([5, 2, 1000])
    y = original[rng.permutation(np.arange(90) % 3)]
    x = rng.normal(size=(90, 4)) + y[:, None] / 500
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y, ids=rng.permutation(5000)[:90] + 11)
    raw = {
        "dataset": {"name": "npz", "path": str(path)},
        "model": {"arch": "mlp", "hidden": [8]},
        "train": {"epochs": 2},
        "audit": {"num_models": 4, "pool_size": 60, "bootstrap": 0, "attacks": ["loss"]},
        "analysis": {
            "spaces": ["input"], "iforest_trees": 5, "embedding_samples": 0, "gallery": 0,
            "neighbors": 3,
        },
    }  # fmt: skip
    out = tmp_path / "run"
    run_audit(validate_config(raw), out)
    audit, analysis = _labels(out / "samples.csv"), _labels(out / "analysis" / "samples.csv")
    assert set(analysis.values()) == {"5", "2", "1000"}
    assert analysis == {i: audit[i] for i in analysis}


def test_original_labels_keep_text_and_numbers_as_given():
    classes = np.array([2, 0, 1, 0])
    np.testing.assert_array_equal(original_labels(classes, None), classes)
    assert original_labels(classes, ["-1", "7", "30"]).tolist() == [30, -1, 7, -1]
    assert original_labels(classes, ["007", "7", "8"]).tolist() == ["8", "007", "7", "007"]
    assert original_labels(classes, ["cat", "dog", "emu"]).tolist() == ["emu", "cat", "dog", "cat"]
