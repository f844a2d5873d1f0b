"""Defence evaluation end to end: adaptive audits, privacy-utility points, outputs."""

import json

import numpy as np
import pytest

from mialens.audit.config import validate_config
from mialens.audit.runner import run_audit
from mialens.defenses.config import DefenseSpec
from mialens.defenses.evaluate import defended_config, evaluate_defenses


def config(**extra):
    raw = {
        "dataset": {"name": "digits"},
        "model": {"hidden": [64]},
        "train": {"epochs": 6, "batch_size": 32},
        "audit": {
            "num_models": 4,
            "pool_size": 400,
            "val_size": 100,
            "bootstrap": 0,
            "attacks": ["loss", "lira_offline"],
        },
        **extra,
    }
    return validate_config(raw)


def test_defended_config_adds_label_only_attacks_for_output_defences():
    base = config(defenses={"evaluate": [], "label_only_attacks": ["gap"]})
    out = defended_config(base, DefenseSpec(name="t", output={"name": "top_k", "k": 1}))
    assert out.audit.attacks == ["loss", "lira_offline", "gap"]
    assert out.defenses is None
    l2 = defended_config(base, DefenseSpec(name="l2", train={"weight_decay": 0.01}))
    assert l2.train.weight_decay == 0.01 and l2.audit.attacks == ["loss", "lira_offline"]


def test_label_preserving_output_defence_keeps_accuracy_and_label_only_leakage():
    cfg = config(audit={**config().audit.model_dump(), "attacks": ["loss", "gap"]})
    plain = run_audit(cfg)
    top1 = run_audit(cfg, defense=DefenseSpec(name="top1", output={"name": "top_k", "k": 1}))
    assert plain.utility["test_accuracy"] == top1.utility["test_accuracy"]
    np.testing.assert_array_equal(plain.scores["gap"], top1.scores["gap"])
    # the released top-1 probability still carries the confidence, so LOSS keeps working
    assert top1.design["defense"] == "top1" and top1.design["defense_seconds_per_answer"] > 0


def test_sample_aware_removal_updates_membership():
    cfg = config()
    spec = DefenseSpec(name="removed", sample_aware={"action": "remove", "fraction": 0.1})
    result = run_audit(cfg, defense=spec)
    # about 10% of each model's training samples are removed and count as non-members
    assert (result.members.sum(axis=1) < 200).all() and (result.members.sum(axis=1) > 170).all()


def test_evaluate_defenses_writes_points(tmp_path):
    cfg = config(
        defenses={
            "label_only_attacks": ["gap"],
            "evaluate": [
                {"name": "l2", "train": {"weight_decay": 0.01}},
                {"name": "memguard", "output": {"name": "memguard", "steps": 30}},
                {"name": "relaxloss", "train": {"relaxloss": {"alpha": 1.0}}},
                {
                    "name": "outliers_smoothed",
                    "sample_aware": {"action": "smooth", "fraction": 0.1},
                },
                {
                    "name": "random_smoothed",
                    "sample_aware": {"action": "smooth", "fraction": 0.1, "counterpart": True},
                },
            ],
        }
    )
    report = evaluate_defenses(cfg, tmp_path)
    saved = json.loads((tmp_path / "defenses.json").read_text())
    assert set(saved["defenses"]) == {
        "undefended", "l2", "memguard", "relaxloss", "outliers_smoothed", "random_smoothed",
    }  # fmt: skip
    for entry in saved["defenses"].values():
        assert set(entry["tpr_at_fpr"]) == {"0.1", "0.01", "0.001", "0.0001"}
        assert 0 <= entry["test_acc"] <= 1 and 0 <= entry["auc"]["value"] <= 1
        assert entry["epsilon_empirical"] is not None
    assert "gap" in saved["defenses"]["memguard"]["attacks"]
    assert saved["defenses"]["memguard"]["kind"] == "inference-time"
    comparison = report["sample_aware_vs_uniform"]
    assert comparison[0]["defense"] == "outliers_smoothed"
    assert comparison[0]["counterpart"] == "random_smoothed"
    html = (tmp_path / "defenses.html").read_text()
    assert "data:image/png;base64," in html and "memguard" in html
    assert (tmp_path / "defenses" / "l2" / "metrics.json").is_file()


def test_memguard_without_validation_split_says_what_to_do():
    cfg = config(audit={**config().audit.model_dump(), "val_size": 0})
    from mialens.errors import DataError

    with pytest.raises(DataError, match="val_size"):
        run_audit(cfg, defense=DefenseSpec(name="m", output="memguard"))


def test_sample_aware_membership_matches_the_training_sets():
    from mialens.audit.runner import prepare_audit

    spec = DefenseSpec(name="removed", sample_aware={"action": "remove", "fraction": 0.1})
    plain = prepare_audit(config())
    setup = prepare_audit(config(), spec)
    for k in range(setup.keep.shape[0]):
        # the keep mask (ground truth of the attacks) is exactly the defended training set
        np.testing.assert_array_equal(
            setup.split.pool[setup.keep[k]], setup.plan.train_positions[k]
        )
        assert not (setup.keep[k] & ~plain.keep[k]).any()  # removal only
        assert 0 < (plain.keep[k] & ~setup.keep[k]).sum() <= 0.1 * plain.keep[k].sum() + 10


def test_sample_aware_removal_skips_the_per_sample_analysis():
    # removal leaves samples IN for fewer than two models: per_sample_vulnerability would
    # raise after every model was trained
    base = config(analysis={})
    removed = DefenseSpec(name="r", sample_aware={"action": "remove", "fraction": 0.1})
    smoothed = DefenseSpec(name="s", sample_aware={"action": "smooth", "fraction": 0.1})
    assert defended_config(base, removed).analysis is None
    assert defended_config(base, smoothed).analysis is not None
