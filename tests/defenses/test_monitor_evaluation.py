"""The monitor's evaluation: false alarms on benign streams, detection of attacks."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from mialens.attacks.base import QueryData
from mialens.attacks.registry import build_attack
from mialens.defenses.monitor import MonitorConfig
from mialens.defenses.monitor_evaluation import (
    MonitorEvaluation,
    attack_streams,
    benign_streams,
    evaluate_monitor,
)
from mialens.errors import DataError
from mialens.targets import as_target


@pytest.fixture(scope="module")
def setting():
    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    order = np.random.default_rng(3).permutation(len(x))  # shuffled, non-contiguous
    train, traffic, candidates = order[:800], order[800:1400], order[1400:1480]
    model = as_target(LogisticRegression(max_iter=300).fit(x[train], y[train]), 10)
    data = QueryData(x=x[candidates], labels=y[candidates], seed=0)
    return model, x[train], x[traffic], data


def test_benign_streams_raise_no_alarm_and_are_reproducible(setting):
    model, calib, traffic, _ = setting
    out = benign_streams(model, calib, traffic, MonitorConfig(), streams=3, length=900, seed=1)
    assert out["false_alarm_rate"] == 0.0 and out["alarm_at"] == [None, None, None]
    assert out["queries_per_stream"] == 600  # no more than the distinct traffic samples
    assert 0.0 <= out["suspicious_rate"] < 0.05
    again = benign_streams(model, calib, traffic, MonitorConfig(), streams=3, length=900, seed=1)
    assert again == out


def test_boundary_attack_is_detected_early_and_single_queries_are_not(setting):
    model, calib, _, data = setting
    boundary = build_attack({"name": "boundary", "max_queries": 60, "calibration": "none"})
    out = attack_streams(model, calib, boundary, data, None, MonitorConfig(), 3, 10, seed=0)
    assert out["detection_rate"] == 1.0
    assert out["queries_per_stream"] > 10 * 30
    # the alarm comes after the first full window, long before the stream ends
    assert 99 <= out["delay_queries"]["max"] < out["queries_per_stream"] / 2
    assert out["samples_before_alarm"] < 10
    # calibrating on random inputs first: the out-of-distribution probes raise the alarm
    # before any candidate is attacked; a refusing monitor alarms at the same query, and
    # the stream is measured uncut (refused answers would end the search early)
    calibrated = build_attack({"name": "boundary", "max_queries": 60})
    flagging = attack_streams(model, calib, calibrated, data, None, MonitorConfig(), 2, 10, 0)
    refusing = attack_streams(
        model, calib, calibrated, data, None, MonitorConfig(action="refuse"), 2, 10, 0
    )
    assert refusing == flagging and flagging["queries_per_stream"] > 100 * 30
    assert flagging["samples_before_alarm"] < 1
    gap = attack_streams(model, calib, build_attack("gap"), data, None, MonitorConfig(), 2, 10, 0)
    # one query per candidate looks like ordinary traffic: a limit, reported as such
    assert gap["detection_rate"] == 0.0 and gap["delay_queries"] is None


def test_evaluate_monitor_report(setting):
    model, calib, traffic, data = setting
    settings = MonitorEvaluation(streams=2, samples_per_stream=5, benign_queries=200)
    attacks = [build_attack({"name": "boundary", "max_queries": 60, "calibration": "none"})]
    report = evaluate_monitor(model, calib, traffic, attacks, data, None, settings, seed=0)
    assert set(report) == {"config", "calibration_samples", "benign", "attacks"}
    assert report["calibration_samples"] == 800 and set(report["attacks"]) == {"boundary"}
    with pytest.raises(DataError, match="benign traffic is empty"):
        benign_streams(model, calib, traffic[:0], MonitorConfig(), 1, 100, 0)
