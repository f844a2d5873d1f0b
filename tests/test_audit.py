"""End-to-end audits: outputs, stable ids, caching, determinism and resume."""

import json
import os

import numpy as np
import pytest

from mialens.audit import training_plan as audit_models
from mialens.audit.design import prepare_audit
from mialens.data.catalog import load_dataset
from mialens.metrics import tpr_at_fpr
from mialens.models import training as model_training
from mialens.report.tables import read_samples
from mialens.workflows.audit import run_audit
from mialens.workflows.config import validate_config


def small_config(**audit):
    raw = {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden": [64]},
        "train": {"epochs": 8, "batch_size": 32},
        "audit": {"num_models": 4, "pool_size": 400, "bootstrap": 20, **audit},
    }
    return validate_config(raw)


def test_outputs_ids_and_members(tmp_path, caplog):
    result = run_audit(small_config(), tmp_path)
    assert "TPR at FPR 0.0001 needs at least 10000 non-members per target" in caplog.text
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["attacks"]) == {
        "loss", "confidence", "entropy", "mentr", "attack_p", "attack_r",
        "lira_online", "lira_offline", "rmia_online", "rmia_offline",
    }  # fmt: skip
    for entry in metrics["attacks"].values():
        assert set(entry["tpr_at_fpr"]) == {"0.1", "0.01", "0.001", "0.0001"}
        assert len(entry["auc"]["per_target"]) == 4
        assert "bootstrap" in entry["auc"] and "paper" in entry
    assert metrics["attacks"]["loss"]["tpr_at_fpr"]["0.0001"]["resolved"] is False
    assert metrics["attacks"]["loss"]["tpr_at_fpr"]["0.1"]["resolved"] is True
    assert 0.0 <= metrics["utility"]["test_accuracy"]["mean"] <= 1.0
    assert metrics["config"]["audit"]["num_models"] == 4
    assert metrics["environment"]["torch"]

    # samples.csv: one row per (sample, target); ids are the data set's own ids
    table = read_samples(tmp_path / "samples.csv")
    assert len(table["sample_id"]) == 4 * 400
    digits = load_dataset("digits")
    pool_ids = table["sample_id"][table["target"] == 0].astype(int)
    assert len(set(pool_ids)) == 400
    assert not np.array_equal(np.sort(pool_ids), pool_ids)  # shuffled, not a contiguous block
    # every row's label and membership agree with the data set and the result
    np.testing.assert_array_equal(table["label"][table["target"] == 0], digits.y[pool_ids])
    for t in range(4):
        rows = table["target"] == t
        np.testing.assert_array_equal(table["member"][rows], result.members[t].astype(int))
        np.testing.assert_array_equal(table["lira_online"][rows], result.scores["lira_online"][t])
    # every sample is a member of exactly half of the models
    assert (result.members.sum(axis=0) == 2).all()
    assert (tmp_path / "report.html").stat().st_size > 1000


def test_second_run_reuses_every_model_and_gives_the_same_numbers(tmp_path):
    first = run_audit(small_config(), tmp_path / "a")
    assert not any(r["cached"] for r in first.training)
    second = run_audit(small_config(), tmp_path / "b")
    assert all(r["cached"] for r in second.training)
    for name in first.scores:
        np.testing.assert_array_equal(first.scores[name], second.scores[name])
    assert first.metrics == second.metrics


def test_same_seed_same_numbers_without_cache(tmp_path, monkeypatch):
    a = run_audit(small_config(attacks=["loss", "lira_online"]))
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(tmp_path / "fresh"))
    b = run_audit(small_config(attacks=["loss", "lira_online"]))
    assert not any(r["cached"] for r in b.training)
    np.testing.assert_array_equal(a.scores["lira_online"], b.scores["lira_online"])
    c = run_audit(small_config(attacks=["loss", "lira_online"], seed=1))
    assert not np.array_equal(a.sample_ids, c.sample_ids)


def test_interrupted_run_resumes_from_cached_models(tmp_path, monkeypatch):
    calls = []
    real_train = model_training.train_model  # looked up there when a model trains

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(model_training, "train_model", crash_on_third)
    config = small_config()
    config.executor.ensemble = "off"  # one model at a time (groups resume: tests/scale)
    with pytest.raises(KeyboardInterrupt):
        run_audit(config, tmp_path)
    assert not (tmp_path / "metrics.json").exists()  # nothing half-written
    monkeypatch.setattr(model_training, "train_model", real_train)
    result = run_audit(config, tmp_path)
    assert [r["cached"] for r in result.training] == [True, True, False, False]


def test_corrupt_cached_model_is_rebuilt(tmp_path, caplog):
    first = run_audit(small_config(attacks=["loss"]))
    cache = os.environ["MIALENS_CACHE_DIR"]
    key = first.training[0]["key"]
    entry = os.path.join(cache, "models", key)
    for name in os.listdir(entry):  # drop cached logits so the weights must be read
        if name.startswith("logits-"):
            os.remove(os.path.join(entry, name))
    with open(os.path.join(entry, "model.safetensors"), "r+b") as fh:
        fh.seek(200)
        fh.write(b"\x00garbage\x00")
    second = run_audit(small_config(attacks=["loss"]))
    assert "corrupt" in caplog.text
    assert second.training[0]["cached"] is False
    np.testing.assert_array_equal(first.scores["loss"], second.scores["loss"])


def test_reference_attacks_beat_loss_on_location30(location30_archive):
    """Seeded statistical check on a real leaky setup: MLPs on Location30 overfit."""
    config = validate_config(
        {
            "dataset": {"name": "location30"},
            "model": {"hidden": [128]},
            "train": {"epochs": 20},
            "audit": {
                "num_models": 8,
                "pool_size": 1600,
                "bootstrap": 0,
                "attacks": ["loss", "lira_online", "lira_offline", "rmia_online", "rmia_offline"],
            },
        }
    )
    result = run_audit(config)

    def mean_tpr(name, level=0.01):
        return np.mean(
            [
                tpr_at_fpr(s, m, level)
                for s, m in zip(result.scores[name], result.members, strict=True)
            ]
        )

    loss = mean_tpr("loss")
    for name in ("lira_online", "lira_offline", "rmia_online", "rmia_offline"):
        assert mean_tpr(name) > max(3 * loss, 0.1), name


def test_queries_follow_the_training_augmentation():
    plain = run_audit(small_config(attacks=["loss", "lira_offline"]))
    assert plain.design["queries_per_sample"] == 1
    raw = small_config(attacks=["loss", "lira_offline"]).model_dump()
    raw["train"]["augment"] = {"flip": False, "shift": 1}
    augmented = run_audit(validate_config(raw))
    assert augmented.design["queries_per_sample"] == 9
    assert augmented.attacks["lira_offline"]["queries_per_sample"] == 9
    assert augmented.attacks["loss"]["queries_per_sample"] == 1


def test_label_only_attack_queries_labels_and_counts_them():
    result = run_audit(small_config(attacks=["loss", "gap"]))
    assert result.attacks["gap"]["threat_model"] == "label"
    assert result.attacks["gap"]["queries_per_sample"] == 1.0
    gap = result.scores["gap"]
    assert set(np.unique(gap)) <= {0.0, 1.0}
    # the gap attack's advantage is the train-test accuracy gap on the pool
    for t in range(4):
        members = result.members[t]
        assert gap[t][members].mean() - gap[t][~members].mean() == pytest.approx(
            result.metrics["gap"].advantage.per_target[t]
        )


def test_ids_labels_membership_and_scores_follow_each_sample(tmp_path):
    """Data whose ids are not its row positions: every row of samples.csv must describe
    the sample with that id (its label, whether the target trained on it, its loss)."""
    digits = load_dataset("digits")
    rng = np.random.default_rng(5)
    order = rng.permutation(len(digits))
    ids = np.array([f"s{v}" for v in rng.permutation(10 * len(digits))[: len(digits)]])
    np.savez(tmp_path / "d.npz", x=digits.x[order], y=digits.y[order], ids=ids)
    config = validate_config(
        {
            "dataset": {"name": "npz", "path": str(tmp_path / "d.npz")},
            "model": {"hidden": [32]},
            "train": {"epochs": 2, "batch_size": 32},
            "audit": {"num_models": 4, "pool_size": 300, "bootstrap": 0, "attacks": ["loss"]},
        }
    )
    setup = prepare_audit(config)
    result = run_audit(config, tmp_path / "out")
    table = read_samples(tmp_path / "out" / "samples.csv")
    by_id = {v: i for i, v in enumerate(ids)}
    models = audit_models.load_models(setup.plan, setup.store)
    for t in range(4):
        rows = table["target"] == t
        pos = np.array([by_id[v] for v in table["sample_id"][rows]])
        np.testing.assert_array_equal(table["label"][rows], digits.y[order][pos])
        trained = set(ids[setup.plan.train_positions[t]].tolist())
        assert set(table["sample_id"][rows][table["member"][rows] == 1].tolist()) == trained
        logits = models[t].logits(digits.x[order][pos]).astype(np.float64)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        loss = -logp[np.arange(len(pos)), digits.y[order][pos]]
        np.testing.assert_allclose(-table["loss"][rows], loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.sample_ids, table["sample_id"][table["target"] == 0])


def _hand_built_result():
    from mialens.audit.results import AuditResult

    gen = np.random.default_rng(0)
    members = np.stack([gen.permutation(np.arange(40) < 20) for _ in range(2)])
    result = AuditResult(
        sample_ids=np.array([f"id-{v}" for v in gen.permutation(40) * 3]),
        labels=gen.integers(0, 3, 40),
        members=members,
        target_models=[0, 1],
        scores={"loss": gen.normal(size=(2, 40)) + members},
        attacks={"loss": {"summary": "loss"}},
        fpr_levels=[0.1],
        config={"audit": {"seed": 0}},
    )
    result.compute_metrics(0, 0)
    return result


def test_run_folder_round_trip_and_damaged_folders_are_data_errors(tmp_path):
    from mialens.errors import DataError
    from mialens.report.tables import samples_table
    from mialens.workflows.outputs import load_result, write_outputs

    result = _hand_built_result()
    write_outputs(result, tmp_path)
    loaded = load_result(tmp_path)
    np.testing.assert_array_equal(loaded.sample_ids, result.sample_ids)
    np.testing.assert_array_equal(loaded.labels, result.labels)
    np.testing.assert_array_equal(loaded.members, result.members)
    np.testing.assert_array_equal(loaded.scores["loss"], result.scores["loss"])  # full precision
    assert samples_table(loaded) == samples_table(result)

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    samples = (tmp_path / "samples.csv").read_text()
    damaged = {
        "no attacks key": ({k: v for k, v in metrics.items() if k != "attacks"}, samples),
        "header only": (metrics, samples.splitlines()[0] + "\n"),
        "empty samples": (metrics, ""),
        "missing score column": (metrics, samples.replace(",loss", ",other", 1)),
    }
    for doc, text in damaged.values():
        (tmp_path / "metrics.json").write_text(json.dumps(doc))
        (tmp_path / "samples.csv").write_text(text)
        with pytest.raises(DataError, match="cannot read the audit run"):
            load_result(tmp_path)
