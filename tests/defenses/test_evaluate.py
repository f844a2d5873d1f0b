"""Defence evaluation end to end: adaptive audits, privacy-utility points, outputs."""

import json

import numpy as np
import pytest

from mialens.defenses.config import DefenseSpec
from mialens.defenses.dp_audit import NOT_DP
from mialens.defenses.summary import compare_sample_aware
from mialens.workflows.audit import run_audit
from mialens.workflows.config import validate_config
from mialens.workflows.defend import defended_config, evaluate_defenses


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
            "monitor": {"streams": 2, "samples_per_stream": 5, "benign_queries": 200},
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
        assert entry["dp_audit"] == {"valid": False, "reason": NOT_DP}  # no DP-SGD here
    assert "gap" in saved["defenses"]["memguard"]["attacks"]
    assert saved["defenses"]["memguard"]["kind"] == "inference-time"
    comparison = report["sample_aware_vs_uniform"]
    assert comparison[0]["defense"] == "outliers_smoothed"
    assert comparison[0]["counterpart"] == "random_smoothed"
    monitor = saved["monitor"]
    assert set(monitor["attacks"]) == {"gap"} and monitor["benign"]["streams"] == 2
    html = (tmp_path / "defenses.html").read_text()
    assert "data:image/png;base64," in html and "memguard" in html
    assert "Query monitor in front of the undefended target" in html
    assert (tmp_path / "defenses" / "l2" / "metrics.json").is_file()


def test_memguard_without_validation_split_says_what_to_do():
    cfg = config(audit={**config().audit.model_dump(), "val_size": 0})
    from mialens.errors import DataError

    with pytest.raises(DataError, match="val_size"):
        run_audit(cfg, defense=DefenseSpec(name="m", output="memguard"))


def test_sample_aware_membership_matches_the_training_sets():
    from mialens.audit.design import prepare_audit
    from mialens.defenses.sample_aware import adjusted_setup

    spec = DefenseSpec(name="removed", sample_aware={"action": "remove", "fraction": 0.1})
    plain = prepare_audit(config())
    setup = adjusted_setup(prepare_audit(config()), spec.sample_aware)
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


def test_sample_removal_audits_without_online_attacks():
    # removal can take an outlier out of every training set, leaving it IN for no
    # reference model, which online attacks cannot score: both variants drop them
    base = config(audit={**config().audit.model_dump(), "attacks": ["loss", "lira_online"]})
    for counterpart in (False, True):
        spec = DefenseSpec(
            name="r", sample_aware={"action": "remove", "fraction": 0.2, "counterpart": counterpart}
        )
        assert defended_config(base, spec).audit.attacks == ["loss"]
    smoothed = DefenseSpec(name="s", sample_aware={"action": "smooth"})
    assert defended_config(base, smoothed).audit.attacks == ["loss", "lira_online"]
    only_online = config(audit={**config().audit.model_dump(), "attacks": ["lira_online"]})
    from mialens.errors import ConfigError

    with pytest.raises(ConfigError, match="offline or reference-free"):
        defended_config(only_online, DefenseSpec(name="r", sample_aware={"action": "remove"}))


def test_removal_of_consistent_outliers_runs_with_online_attacks_configured(tmp_path):
    cfg = config(
        audit={**config().audit.model_dump(), "attacks": ["loss", "lira_online"]},
        defenses={
            "include_undefended": False,
            "evaluate": [{"name": "rm", "sample_aware": {"action": "remove", "fraction": 0.2}}],
        },
    )
    spec = DefenseSpec.model_validate(cfg.defenses.evaluate[0].model_dump())
    from mialens.audit.design import prepare_audit
    from mialens.defenses.sample_aware import adjusted_setup

    keep = adjusted_setup(prepare_audit(cfg), spec.sample_aware).keep
    assert (keep.sum(axis=0) == 0).any()  # some samples are now in no model
    report = evaluate_defenses(cfg, tmp_path)
    assert set(report["defenses"]["rm"]["attacks"]) == {"loss"}


def test_rerun_reuses_finished_defence_audits(tmp_path, monkeypatch):
    import mialens.workflows.defend as runner

    cfg = config(defenses={"evaluate": [{"name": "l2", "train": {"weight_decay": 0.01}}]})
    first = evaluate_defenses(cfg, tmp_path)
    calls = []
    real = runner.run_audit
    monkeypatch.setattr(runner, "run_audit", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = evaluate_defenses(cfg, tmp_path)
    assert calls == []  # both audits were read back from their run folders
    assert again["defenses"] == first["defenses"]
    changed = config(defenses={"evaluate": [{"name": "l2", "train": {"weight_decay": 0.02}}]})
    evaluate_defenses(changed, tmp_path)
    assert len(calls) == 1  # only the defence whose recipe changed runs again
    (tmp_path / "defenses" / "l2" / "samples.csv").write_text("truncated")
    redone = evaluate_defenses(changed, tmp_path)
    assert len(calls) == 2  # an unreadable run is redone, not trusted
    # ... from its cached models, whose recorded training time the report marks
    assert first["defenses"]["l2"]["models_reused"] == 0
    assert redone["defenses"]["l2"]["models_reused"] == 4
    assert (tmp_path / "defenses.html").read_text().count("&dagger;") == 2  # cell + note


def test_sample_aware_comparison_uses_the_defended_audits_attacks():
    def entry(tprs, acc, sample_aware=None):
        return {
            "spec": {"sample_aware": sample_aware} if sample_aware else {},
            "test_acc": acc,
            "attacks": {n: {"tpr_at_fpr": {"0.01": v}} for n, v in tprs.items()},
            "tpr_at_fpr": {"0.01": {"value": max(tprs.values())}},
        }

    aware = {"action": "remove", "fraction": 0.1, "counterpart": False}
    entries = {
        "undefended": entry({"loss": 0.10, "lira_online": 0.40}, 0.80),
        "rm": entry({"loss": 0.04}, 0.78, aware),
        "rnd": entry({"loss": 0.09}, 0.81, {**aware, "counterpart": True}),
    }
    (row,) = compare_sample_aware(entries, "0.01")
    assert row["counterpart"] == "rnd"
    # measured against the undefended model's LOSS (0.10), not its online LiRA (0.40)
    assert row["sample_aware"]["tpr_reduction"] == pytest.approx(0.06)
    assert row["sample_aware"]["privacy_per_accuracy_point"] == pytest.approx(0.06 / 0.02)
    assert row["uniform"]["tpr_reduction"] == pytest.approx(0.01)
    assert not row["sample_aware"]["free"]
    # more accurate than undefended and more private: no ratio, flagged as free
    assert row["uniform"]["privacy_per_accuracy_point"] is None and row["uniform"]["free"]


def test_sample_aware_clipping_reaches_every_models_training():
    from mialens.audit.design import prepare_audit
    from mialens.defenses.sample_aware import adjusted_setup

    spec = DefenseSpec(
        name="clipped",
        sample_aware={"action": "clip", "fraction": 0.1, "clip_norm": 0.2, "noise_multiplier": 2},
    )
    plain = prepare_audit(config())
    setup = adjusted_setup(prepare_audit(config()), spec.sample_aware)
    plan = setup.plan
    assert plan.per_sample and plan.clip_noise == pytest.approx(0.4)
    np.testing.assert_array_equal(setup.keep, plain.keep)  # nothing removed
    for k, norms in enumerate(plan.sample_clip_norms):
        assert norms.shape == plan.train_positions[k].shape
        assert set(np.unique(norms)) == {0.2, np.inf}
        assert 0.05 < np.isfinite(norms).mean() < 0.15
        assert plan.spec(k) != plain.plan.spec(k)  # its own cache key
    result = run_audit(config(), defense=spec)
    assert np.isfinite(result.scores["loss"]).all()
    assert all(r["ensemble"] == 1 for r in result.training)  # trained one by one


def test_defences_audited_with_fewer_attacks_are_marked_with_the_restricted_baseline():
    from mialens.defenses.summary import mark_comparable

    def entry(tprs):
        return {
            "attacks": {
                n: {"tpr_at_fpr": {"0.01": v}, "tpr_interval": {"0.01": [v / 2, 2 * v]}}
                for n, v in tprs.items()
            },
            "tpr_at_fpr": {"0.01": {"value": max(tprs.values())}},
        }

    entries = {
        "undefended": entry({"loss": 0.10, "lira_offline": 0.15, "lira_online": 0.40}),
        "rm": entry({"loss": 0.04, "lira_offline": 0.05}),
        "top_1": entry({"loss": 0.30, "lira_offline": 0.1, "lira_online": 0.3, "gap": 0.2}),
    }
    mark_comparable(entries)
    assert entries["top_1"]["comparable"] and entries["undefended"]["comparable"]
    assert entries["top_1"]["undefended_same_attacks"] is None
    rm = entries["rm"]
    assert not rm["comparable"] and rm["missing_attacks"] == ["lira_online"]
    # the undefended model's strongest among the attacks both ran: offline LiRA, not 0.40
    assert rm["undefended_same_attacks"]["0.01"] == {
        "value": 0.15, "attack": "lira_offline", "ci_low": 0.075, "ci_high": 0.3,
    }  # fmt: skip


def test_defences_page_separates_incomparable_defences_and_links_every_audit(tmp_path):
    from mialens.report.defenses_page import comparable_groups

    cfg = config(
        audit={**config().audit.model_dump(), "attacks": ["loss", "lira_online"]},
        defenses={
            "evaluate": [
                {"name": "rm", "sample_aware": {"action": "remove", "fraction": 0.1}},
                {"name": "top 1", "output": {"name": "top_k", "k": 1}},
            ]
        },
    )
    report = evaluate_defenses(cfg, tmp_path)
    entries = report["defenses"]
    assert not entries["rm"]["comparable"] and entries["rm"]["missing_attacks"] == ["lira_online"]
    assert entries["top 1"]["comparable"] and entries["undefended"]["comparable"]
    assert comparable_groups(report) == [((), ["undefended", "top 1"]), (("lira_online",), ["rm"])]
    html = (tmp_path / "defenses.html").read_text()
    for entry in entries.values():
        assert (tmp_path / entry["report"]).is_file()  # relative to the page
        assert f'href="{entry["report"]}"' in html
    assert "without lira_online" in html and "undefended: " in html
