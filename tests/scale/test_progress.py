"""Audit progress: per-epoch training updates, bounded log lines off a terminal."""

import logging

import numpy as np
import pytest

from mialens.workflows.audit import run_audit
from mialens.workflows.config import validate_config
from mialens.workflows.progress import LogProgress, TrainingProgress


def _config(ensemble):
    return validate_config(
        {
            "dataset": {"name": "digits"},
            "model": {"hidden": [16]},
            "train": {"epochs": 3, "batch_size": 64},
            "audit": {"num_models": 4, "pool_size": 200, "bootstrap": 0, "attacks": ["loss"]},
            "executor": ensemble,
        }
    )


@pytest.mark.parametrize(
    "ensemble", [{"ensemble": "off"}, {"ensemble_size": 2}], ids=["one-by-one", "groups"]
)
def test_a_callback_receives_per_epoch_updates(ensemble, tmp_path, monkeypatch):
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(tmp_path))
    events = []
    watched = run_audit(_config(ensemble), progress=lambda *event: events.append(event))
    training = [e for e in events if e[0] == "models"]
    assert training[0] == ("models", 0, 16, "0/4 models")
    assert training[-1] == ("models", 16, 16, "4/4 models")
    done = [e[1] for e in training]
    assert done == sorted(done)
    # every epoch moves the bar before the first model is done: by one model-epoch one
    # by one, by the group's two in groups of two
    step = 1 if ensemble.get("ensemble") == "off" else 2
    before = [e[1] for e in training if e[3] == "0/4 models"]
    assert before == [step * epoch for epoch in range(4)]
    attacks = [e for e in events if e[0] == "attacks"]
    assert attacks[-1][1:3] == (4, 4)
    # progress changes no number (the models are now cached: train again elsewhere)
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(tmp_path / "quiet"))
    quiet = run_audit(_config(ensemble))
    np.testing.assert_array_equal(watched.scores["loss"], quiet.scores["loss"])


def test_cached_models_count_all_their_epochs(tmp_path, monkeypatch):
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(tmp_path))
    run_audit(_config({}))
    events = []
    run_audit(_config({}), progress=lambda *event: events.append(event))
    assert [e for e in events if e[0] == "models"][-1] == ("models", 16, 16, "4/4 models")


def test_log_progress_writes_bounded_lines(caplog):
    now = [0.0]
    hook = LogProgress(interval=30.0, clock=lambda: now[0])
    training = TrainingProgress(hook, num_models=16, epochs=30)
    with caplog.at_level(logging.INFO, logger="mialens.workflows.progress"):
        for k in range(16):  # one second per epoch: 480 s in all, 16 x 31 units
            for epoch in range(1, 31):
                now[0] += 1.0
                training.epoch([k], epoch)
            training.model_done(k)
        training.model_done(15)  # a repeated final event writes nothing more
    lines = [r.getMessage() for r in caplog.records]
    assert 480 // 30 <= len(lines) <= 480 // 30 + 1
    assert lines[-1] == "models: 100% (16/16 models), 480 s"
    assert lines[0] == "models: 6% (0/16 models), 30 s"


def test_run_audit_logs_progress_when_stdout_is_not_a_terminal(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="mialens.workflows.progress"):
        run_audit(_config({}), progress=True)  # pytest captures stdout: not a terminal
    lines = [r.getMessage() for r in caplog.records if r.name == "mialens.workflows.progress"]
    assert [line.split(":")[0] for line in lines] == ["models", "attacks"]


def test_audit_model_reports_reference_training_and_attacks():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    import mialens

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(1).permutation(len(y))
    pool, pop = order[:300], order[300:500]
    members = np.random.default_rng(2).random(300) < 0.5
    target = LogisticRegression(max_iter=200).fit(x[pool][members], y[pool][members])
    events = []
    mialens.audit_model(
        target, x[pool], y[pool], members, population=(x[pop], y[pop]), num_references=4,
        bootstrap=0, attacks=["loss", "rmia_offline"], progress=lambda *e: events.append(e),
    )  # fmt: skip
    assert [e for e in events if e[0] == "models"] == [
        ("models", r, 4, f"{r}/4 models") for r in range(1, 5)
    ]
    assert [e[1:3] for e in events if e[0] == "attacks"] == [(0, 2), (1, 2), (2, 2)]
