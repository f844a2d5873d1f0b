"""The query monitor: quiet on benign traffic, alarmed by perturbation streams."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from mialens.defenses.monitor import MonitorConfig, QueryMonitor
from mialens.errors import DataError
from mialens.targets import CallableTarget


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return (x / 16).astype(np.float32), y


def model():
    return CallableTarget(lambda x: np.tile(np.linspace(0, 1, 10), (len(x), 1)), num_classes=10)


def test_quiet_on_shuffled_test_traffic(digits):
    x, _ = digits
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    monitor = QueryMonitor(model(), x[order[:800]])
    for batch in np.array_split(x[order[800:]], 10):
        out = monitor.logits(batch)
        assert np.allclose(out[:, -1], 1.0)  # still answering normally
    assert monitor.alarm_at is None
    assert monitor.suspicious / monitor.queries < 0.05


def test_alarms_on_a_boundary_style_stream_and_refuses(digits):
    x, _ = digits
    monitor = QueryMonitor(model(), x[:800], MonitorConfig(action="refuse"))
    rng = np.random.default_rng(1)
    # a decision-based attack walks towards the boundary with many small perturbations
    stream = np.concatenate([x[800 + i] + rng.normal(0, 0.02, (50, 64)) for i in range(6)])
    outs = [monitor.logits(stream[i : i + 25]) for i in range(0, len(stream), 25)]
    assert monitor.alarm_at is not None and monitor.alarm_at < 150
    assert np.allclose(outs[-1], 0.0)  # after the alarm: uniform answers


def test_repeated_queries_and_degrade_mode(digits):
    x, _ = digits
    monitor = QueryMonitor(model(), x[:800], MonitorConfig(action="degrade", min_queries=20))
    for _ in range(10):
        monitor.logits(np.repeat(x[900:901], 5, axis=0))
    assert monitor.alarm_at is not None
    out = monitor.logits(x[901:903])
    assert (out.max(axis=1) == 0).all() and (out.argmax(axis=1) == 9).all()


def test_needs_calibration_data():
    with pytest.raises(DataError, match="20 benign"):
        QueryMonitor(model(), np.zeros((5, 64)))


def test_out_of_distribution_probes_raise_the_alarm(digits):
    x, _ = digits
    monitor = QueryMonitor(model(), x[:800], MonitorConfig(action="flag"))
    noise = np.random.default_rng(2).uniform(0, 1, (200, 64)).astype(np.float32)
    out = monitor.logits(noise)
    assert monitor.alarm_at is not None and monitor.alarm_at < 120
    assert np.allclose(out[:, -1], 1.0)  # flag mode keeps answering


def test_no_alarm_before_a_full_window_and_earlier_queries_are_answered(digits):
    x, _ = digits
    monitor = QueryMonitor(model(), x[:800], MonitorConfig(action="refuse"))
    # 30 repeats: suspicious, but fewer than min_queries (100) queries so far
    monitor.logits(np.repeat(x[900:901], 30, axis=0))
    assert monitor.alarm_at is None
    # 500 benign queries, then repeats, in one batch: only the queries from the alarm on
    # are refused
    fresh = QueryMonitor(model(), x[:800], MonitorConfig(action="refuse"))
    out = fresh.logits(np.concatenate([x[1000:1500], np.repeat(x[900:901], 300, axis=0)]))
    assert 500 <= fresh.alarm_at < 800
    assert np.allclose(out[: fresh.alarm_at, -1], 1.0)
    assert np.allclose(out[fresh.alarm_at :], 0.0)
