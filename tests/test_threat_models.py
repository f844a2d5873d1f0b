"""Every threat model inside one audit: label-only, white-box, shadow-model classifiers,
trajectory and quantile attacks appear in metrics.json and samples.csv with their
threat model and query counts."""

import json

import numpy as np
import pytest

from mialens.report.tables import read_samples
from mialens.workflows.audit import run_audit
from mialens.workflows.config import validate_config

CHEAP = [
    "gap",
    {"name": "augmentation", "shift": 1},
    {"name": "boundary", "max_queries": 60, "calibration_samples": 10},
    "transfer",
    {"name": "yoqo", "steps": 10},
    "gradient_norm",
    {"name": "nasr", "attack_max_epochs": 3, "max_rows": 400},
    {"name": "shokri", "attack_max_epochs": 3},
    {"name": "ml_leaks", "attack_max_epochs": 3},
    {"name": "ml_leaks_transfer", "attack_max_epochs": 3},
    {"name": "trajectory", "epochs": 3, "attack_max_epochs": 3},
    {"name": "seqmia", "epochs": 3, "attack_max_epochs": 3},
    {"name": "quantile", "epochs": 5},
]
THREATS = {
    "gap": "label", "augmentation": "label", "boundary": "label", "transfer": "label",
    "yoqo": "label", "gradient_norm": "white-box", "nasr": "white-box", "shokri": "score",
    "ml_leaks": "score", "ml_leaks_transfer": "score", "trajectory": "score",
    "seqmia": "score", "quantile": "score",
}  # fmt: skip


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    out = tmp_path_factory.mktemp("threats")
    config = validate_config(
        {
            "dataset": {"name": "digits"},
            "model": {"arch": "mlp", "hidden": [32]},
            "train": {"epochs": 10, "batch_size": 32},
            "audit": {"num_models": 4, "pool_size": 200, "bootstrap": 0, "attacks": CHEAP},
        }
    )
    return run_audit(config, out), out


def test_every_attack_reports_its_threat_model_and_queries(audit):
    result, out = audit
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["attacks"]) == set(THREATS)
    pool, population = 200, result.design["population_size"]
    expected = {
        "gap": 1.0, "augmentation": 9.0, "yoqo": 1.0, "gradient_norm": 1.0, "nasr": 1.0,
        "shokri": 1.0, "ml_leaks": 1.0, "ml_leaks_transfer": 1.0,
        "transfer": 0.5, "trajectory": 1 + population / pool, "seqmia": 1 + population / pool,
        "quantile": 1 + population / pool,
    }  # fmt: skip
    for name, entry in metrics["attacks"].items():
        assert entry["threat_model"] == THREATS[name], name
        assert len(entry["auc"]["per_target"]) == 4
        if name in expected:
            assert entry["queries_per_sample"] == pytest.approx(expected[name]), name
    # the boundary search: at most 60 per sample, plus 10 random inputs for calibration
    assert 20 < metrics["attacks"]["boundary"]["queries_per_sample"] <= 60 + 10 * 61 / pool


def test_every_attack_scores_every_sample_in_samples_csv(audit):
    result, out = audit
    table = read_samples(out / "samples.csv")
    for name in THREATS:
        column = np.asarray(table[name], dtype=float)
        assert column.shape == (4 * 200,) and np.isfinite(column).all(), name
        np.testing.assert_array_equal(column[table["target"] == 1], result.scores[name][1])


def test_query_attacks_on_a_scikit_learn_model_through_the_api():
    from sklearn.linear_model import LogisticRegression

    from mialens.errors import DataError
    from mialens.workflows.api import audit_model

    g = np.random.default_rng(0)
    y = g.integers(3, size=300)
    x = (g.normal(size=(300, 8)) + np.eye(3, 8)[y] * 2).astype(np.float32)
    members = np.arange(150) < 75
    estimator = LogisticRegression(max_iter=200).fit(x[:75], y[:75])
    attacks = [
        "gap",
        {"name": "boundary", "max_queries": 40, "calibration_samples": 5},
        {"name": "quantile", "epochs": 5},
        {"name": "shokri", "classifier": "logistic"},
        {"name": "trajectory", "epochs": 2, "attack_max_epochs": 2},  # default MLP students
    ]
    common = dict(population=(x[150:], y[150:]), num_references=2, bootstrap=0)
    result = audit_model(estimator, x[:150], y[:150], members, attacks=attacks, **common)
    assert set(result.scores) == {"gap", "boundary", "quantile", "shokri", "trajectory"}
    assert result.attacks["quantile"]["queries_per_sample"] == pytest.approx(2.0)
    with pytest.raises(DataError, match="PyTorch"):
        audit_model(estimator, x[:150], y[:150], members, attacks=["gradient_norm"], **common)


def test_shadow_training_attacks_mirror_adversarial_regularisation(tmp_path):
    """Under AdvReg the shadows hold out their own reference non-members (the audit's
    validation split is the defender's) instead of failing for lack of one."""
    config = validate_config(
        {
            "dataset": {"name": "digits"},
            "model": {"arch": "mlp", "hidden": [16]},
            "train": {"epochs": 2, "adversarial_regularization": {"alpha": 1.0}},
            "audit": {
                "num_models": 2,
                "pool_size": 120,
                "val_size": 40,
                "bootstrap": 0,
                "attacks": ["transfer", {"name": "ml_leaks_transfer", "attack_max_epochs": 2}],
            },
        }
    )
    result = run_audit(config, tmp_path)
    for name in ("transfer", "ml_leaks_transfer"):
        assert np.isfinite(result.scores[name]).all()
