"""Typed results round-trip through their JSON documents: metrics.json keeps its keys,
key order and values, and older files without the tie guard still load."""

from __future__ import annotations

import copy
import json

import numpy as np

from mialens.audit.canaries import canary_metrics
from mialens.audit.results import AuditResult
from mialens.metrics.leakage import AttackLeakage, LevelResult, leakage_summary
from mialens.metrics.threshold_position import MIN_FALSE_POSITIVES_FOR_INTERVAL
from mialens.report.tables import samples_table
from mialens.workflows.outputs import load_result

LEVELS = [0.1, 0.01]


def _result() -> AuditResult:
    """Three targets (shuffled ids 4, 9, 2) over 200 shuffled non-contiguous string ids;
    ``discrete`` ties most members at one score, so 10% FPR is unreachable."""
    gen = np.random.default_rng(3)
    n = 200
    ids = np.array([f"s{v}" for v in gen.permutation(np.arange(7, 7 + 3 * n, 3))])
    members = np.stack([gen.permutation(np.arange(n) < n // 2) for _ in range(3)])
    top = gen.random(members.shape) < np.where(members, 0.7, 0.15)
    scores = {
        "smooth": gen.normal(size=members.shape) + members,
        "discrete": np.where(top, 1.0, gen.uniform(0, 0.9, members.shape)),
    }
    result = AuditResult(
        sample_ids=ids,
        labels=gen.integers(0, 3, size=n),
        members=members,
        target_models=[4, 9, 2],
        scores=scores,
        attacks={k: {"summary": k, "paper": "", "threat_model": "score"} for k in scores},
        fpr_levels=LEVELS,
        config={"audit": {"seed": 0}},
        skipped={"boundary": "needs labels"},
    )
    result.compute_metrics(n_boot=10, seed=0)
    canary = np.zeros(n, bool)
    canary[gen.choice(n, 20, replace=False)] = True
    for name, s in scores.items():
        result.metrics[name].canaries = canary_metrics(s, members, canary, LEVELS)
    return result


def _loaded(result: AuditResult, tmp_path) -> tuple[dict, AuditResult]:
    doc = json.loads(json.dumps(result.to_json()))
    (tmp_path / "metrics.json").write_text(json.dumps(doc))
    (tmp_path / "samples.csv").write_text(samples_table(result))
    return doc, load_result(tmp_path)


def test_metrics_json_keys_and_order():
    doc = _result().to_json()
    entry = doc["attacks"]["discrete"]
    info = ["summary", "paper", "threat_model"]
    metrics = ["auc", "advantage", "tpr_at_fpr", "tie_share", "bootstrap_replicates", "canaries"]
    assert list(entry) == info + metrics
    spread = ["mean", "std", "min", "max", "n", "ci_low", "ci_high", "per_target", "bootstrap"]
    assert list(entry["auc"]) == spread
    level = entry["tpr_at_fpr"]["0.1"]
    assert list(entry["tpr_at_fpr"]) == ["0.1", "0.01"]
    tail = ["resolved", "reachable", "unreachable_targets", "ties", "allowed_false_positives"]
    assert list(level)[-5:] == tail
    assert list(level["ties"]) == ["reachable", "achieved_fpr", "next_fpr", "group_share"]
    assert level["reachable"] is False and level["unreachable_targets"] >= 1
    assert list(entry["canaries"]) == ["count", "pooled", "global_threshold"]
    assert list(entry["canaries"]["global_threshold"]["0.01"]) == ["canaries", "natural"]
    assert doc["fpr_levels"] == ["0.1", "0.01"]


def test_audit_result_round_trips(tmp_path):
    result = _result()
    doc, loaded = _loaded(result, tmp_path)
    assert loaded.to_json() == doc
    assert loaded.metrics == result.metrics
    assert loaded.skipped == result.skipped
    np.testing.assert_array_equal(loaded.sample_ids, result.sample_ids)
    np.testing.assert_array_equal(loaded.members, result.members)
    assert loaded.target_models == [4, 9, 2]
    for name, scores in result.scores.items():
        np.testing.assert_allclose(loaded.scores[name], scores, rtol=1e-6)


def test_attack_leakage_round_trips_and_reads_by_float_level():
    gen = np.random.default_rng(5)
    members = np.stack([gen.permutation(np.arange(60) < 30) for _ in range(2)])
    metrics = leakage_summary(gen.normal(size=members.shape) + members, members, LEVELS, n_boot=5)
    assert AttackLeakage.from_json(metrics.to_json()) == metrics
    doc = json.loads(json.dumps(metrics.to_json()))
    assert AttackLeakage.from_json(doc).to_json() == doc
    assert metrics.at(0.01) is metrics.tpr_at_fpr[0.01]
    assert metrics.at(0.01).per_target == doc["tpr_at_fpr"]["0.01"]["per_target"]
    assert metrics.at(0.1).interval() == (
        doc["tpr_at_fpr"]["0.1"]["bootstrap"]["low"],
        doc["tpr_at_fpr"]["0.1"]["bootstrap"]["high"],
    )


def test_metrics_older_than_the_tie_guard_load(tmp_path):
    """metrics.json written before the tie guard (c5f2227) has no tie_share, reachable,
    unreachable_targets or ties; without bootstrap it has neither bootstrap key."""
    doc, _ = _loaded(_result(), tmp_path)
    old = copy.deepcopy(doc)
    for entry in old["attacks"].values():
        del entry["tie_share"], entry["bootstrap_replicates"], entry["canaries"]
        del entry["auc"]["bootstrap"]
        for level in entry["tpr_at_fpr"].values():
            del level["reachable"], level["unreachable_targets"], level["ties"]
            del level["allowed_false_positives"]
    (tmp_path / "metrics.json").write_text(json.dumps(old))
    loaded = load_result(tmp_path)
    level = loaded.metrics["discrete"].at(0.1)
    assert isinstance(level, LevelResult)
    assert level.reachable and level.unreachable() == [] and level.valid
    assert loaded.metrics["discrete"].tie_share is None
    assert loaded.metrics["discrete"].auc.bootstrap is None
    assert loaded.to_json() == old
    assert "discrete" in loaded.summary()


def test_allowed_false_positives_are_the_fewest_over_targets():
    """Targets with 150 and 99 non-members (shuffled): FPR 0.05 allows 7 and 4, 0.1 allows
    15 and 9, 0.2 allows 30 and 19; under 10 the bootstrap interval is widened."""
    gen = np.random.default_rng(8)
    members = np.stack(
        [gen.permutation(np.arange(300) < 150), gen.permutation(np.arange(300) < 201)]
    )
    metrics = leakage_summary(gen.normal(size=members.shape) + members, members, [0.05, 0.1, 0.2])
    allowed = {lv: metrics.at(lv).allowed_false_positives for lv in (0.05, 0.1, 0.2)}
    assert allowed == {0.05: 4, 0.1: 9, 0.2: 19}
    assert MIN_FALSE_POSITIVES_FOR_INTERVAL == 10
    assert [metrics.at(lv).interval_widened for lv in (0.05, 0.1, 0.2)] == [True, True, False]
    assert AttackLeakage.from_json(metrics.to_json()).at(0.1).allowed_false_positives == 9
