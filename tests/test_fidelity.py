"""Fidelity of the reference models to a user-supplied target: gaps, recipes, report."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from mialens.audit.design import prepare_audit
from mialens.audit.fidelity import (
    ACCURACY_GAP_THRESHOLD,
    data_sha256,
    recipe_differences,
    reference_fidelity,
)
from mialens.models.architectures import ModelConfig
from mialens.models.recipe import TrainConfig
from mialens.models.store import spec_key
from mialens.workflows.api import audit_logits, audit_model, torch_recipe
from mialens.workflows.config import validate_config


def test_gaps_and_warnings_by_hand():
    record = reference_fidelity((0.90, 0.80), ([0.90, 0.88], [0.70, 0.72]), None, None)
    assert record["gap"]["train"] == pytest.approx(0.01)
    assert record["gap"]["test"] == pytest.approx(0.09)
    assert record["references"]["test_accuracy"] == pytest.approx(0.71)
    assert ACCURACY_GAP_THRESHOLD == 0.05
    (warning,) = record["warnings"]
    assert warning.startswith("the target's test accuracy (0.800) differs from its references'")
    assert "by 0.090 > 0.05" in warning


def test_recipe_differences_are_listed_by_dotted_key():
    target = {"epochs": 30, "optimizer": {"lr": 0.01, "name": "sgd"}, "data_sha256": "a"}
    refs = {"epochs": 30, "optimizer": {"lr": 0.001, "name": "sgd"}, "data_sha256": "b"}
    assert recipe_differences(target, refs) == ["optimizer.lr: target 0.01, references 0.001"]
    assert recipe_differences(None, refs) == []
    record = reference_fidelity((1.0, 0.9), ([1.0], [0.9]), target, refs)
    assert record["warnings"] == [
        "the target's recipe differs from its references' in optimizer.lr: target 0.01, "
        "references 0.001"
    ]


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(3).permutation(len(y))[:700]
    x = (x[order] / 16).astype(np.float32)
    return x[:500], y[order][:500], x[500:], y[order][500:]


def test_a_target_trained_with_another_recipe_is_flagged(digits, tmp_path, caplog):
    x, y, x_test, y_test = digits
    members = np.random.default_rng(0).random(len(y)) < 0.5
    model = ModelConfig(hidden=[64])
    target_train = TrainConfig(epochs=40, lr=0.01, batch_size=32)
    target = torch_recipe(model, target_train, 10)(x[members], y[members], 7)
    references = torch_recipe(model, TrainConfig(epochs=1, lr=1e-4, batch_size=32), 10)
    result = audit_model(
        target, x, y, members, test=(x_test, y_test), train_reference=references,
        target_recipe=target_train, num_references=2, attacks=["loss", "lira_offline"],
        bootstrap=0, out=tmp_path,
    )  # fmt: skip
    fidelity = result.design["fidelity"]
    assert fidelity["target"]["train_accuracy"] == 1.0
    assert fidelity["gap"]["train"] > 0.5 and fidelity["gap"]["test"] > 0.3
    assert "epochs: target 40, references 1" in fidelity["recipe_differences"]
    assert "optimizer.lr: target 0.01, references 0.0001" in fidelity["recipe_differences"]
    assert fidelity["reference_recipe"]["data_sha256"] == data_sha256(x, y)
    assert len(fidelity["warnings"]) == 3 and "reference fidelity" in caplog.text
    page = (tmp_path / "report.html").read_text()
    assert "Fidelity of the reference models" in page and "Warning: the target&#39;s" in page


def test_a_scikit_learn_target_and_its_clones_agree(digits):
    x, y, _, _ = digits
    members = np.random.default_rng(1).random(len(y)) < 0.5
    target = LogisticRegression(C=0.5, max_iter=300).fit(x[members], y[members])
    result = audit_model(target, x, y, members, num_references=2, attacks=["loss"], bootstrap=0)
    fidelity = result.design["fidelity"]
    assert fidelity["target_recipe"]["params"]["C"] == 0.5
    assert fidelity["recipe_differences"] == []
    assert abs(fidelity["gap"]["train"]) <= ACCURACY_GAP_THRESHOLD
    assert abs(fidelity["gap"]["test"]) <= ACCURACY_GAP_THRESHOLD
    assert fidelity["warnings"] == []


def test_precomputed_outputs_report_the_accuracy_gap():
    rng = np.random.default_rng(2)
    n, labels = 40, np.arange(40) % 4
    member = rng.random(n) < 0.5
    ref_member = np.stack([~member, member])
    right = np.eye(4)[labels] * 5.0
    wrong = np.eye(4)[(labels + 1) % 4] * 5.0
    refs = np.stack([np.where(m[:, None], right, wrong) for m in ref_member])
    result = audit_logits(right, labels, member, refs, ref_member, attacks=["loss"], bootstrap=0)
    fidelity = result.design["fidelity"]
    assert fidelity["target"] == {"train_accuracy": 1.0, "test_accuracy": 1.0}
    assert fidelity["references"]["test_accuracy"] == 0.0
    assert fidelity["gap"] == {"train": 0.0, "test": 1.0}


@pytest.mark.parametrize(
    "change",
    [
        {"train": {"label_smoothing": 0.1}},  # the loss
        {"train": {"optimizer": "sgd"}},
        {"train": {"schedule": "cosine"}},
        {"train": {"augment": {"shift": 1}}},
        {"train": {"epochs": 3}},
        {"audit": {"seed": 1}},  # the training halves (and seeds)
    ],
)
def test_a_cached_model_is_reused_only_when_its_whole_recipe_matches(change):
    def key(extra):
        raw = {"dataset": {"name": "digits"}, "train": {"epochs": 2}, "audit": {"num_models": 4}}
        for section, values in extra.items():
            raw[section] = {**raw.get(section, {}), **values}
        return spec_key(prepare_audit(validate_config(raw)).plan.spec(0))

    assert key({}) == key({})
    assert key(change) != key({})


def test_a_change_of_one_training_value_changes_the_key(tmp_path):
    x = np.random.default_rng(0).normal(size=(120, 3)).astype(np.float32)
    y = np.arange(120) % 3
    keys = []
    for flip in (False, True):
        path = tmp_path / f"data{flip:d}.npz"
        np.savez(path, x=x, y=np.where(np.arange(120) == 5, (y + flip) % 3, y))
        raw = {"dataset": {"name": "npz", "path": str(path)}, "audit": {"num_models": 4}}
        keys.append(spec_key(prepare_audit(validate_config(raw)).plan.spec(0)))
    assert keys[0] != keys[1]
