"""The cost of an audit design, estimated before training (mialens.audit.budget)."""

import logging

import pytest
import torch

from mialens.audit import budget
from mialens.audit.budget import DesignSize, check_memory, forward_flops, training_seconds
from mialens.audit.design import prepare_audit
from mialens.audit.executor import ExecutorConfig
from mialens.errors import ConfigError
from mialens.models.store import ModelStore
from mialens.workflows.config import validate_config

SIZE = DesignSize(num_models=4, pool=10, queried=15, queries=2, classes=3, attacks=5)


def test_memory_parts_by_hand():
    assert SIZE.memory_parts() == {
        "logits": 2 * 4 * 15 * 2 * 3 * 4,  # 2880
        "attacks": 5 * 4 * 10 * 3 * 8,  # 4800
        "design": 4 * 10 * 5,  # 200
    }


def test_check_memory_refuses_with_the_numbers():
    check_memory(SIZE, available=7880)  # exactly fits
    with pytest.raises(ConfigError) as info:
        check_memory(SIZE, available=7879)
    message = str(info.value)
    assert "needs about 0.00 GB of memory but this machine has 0.00 GB available" in message
    assert "logits of 4 models x 15 query samples x 2 queries x 3 classes" in message
    assert "lower audit.num_models" in message


def test_forward_flops_of_an_mlp_by_hand():
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    assert forward_flops(model, (6,)) == 2 * (6 * 4 + 4 * 3)


def test_training_seconds_by_hand():
    # 8 models x 5 epochs x 100/2 samples x 3 x 1e6 FLOPs at 3e10 FLOP/s, + 0.05 s per model
    assert training_seconds(8, 5, 100, 10**6, "cpu") == pytest.approx(0.2 + 0.4)
    assert training_seconds(8, 5, 100, 10**6, "cuda") == pytest.approx(0.006 + 0.4)


def test_long_training_is_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="mialens.audit.budget"):
        budget.warn_long_training(3600.0, 16, "cpu", 1)
        assert not caplog.records
        budget.warn_long_training(7200.0, 16, "cpu", 1)
    assert "training the 16 models is estimated at 2.0 hours on cpu (none cached" in caplog.text


def test_the_warning_is_of_wall_time_over_parallel_trainers(caplog):
    with caplog.at_level(logging.WARNING, logger="mialens.audit.budget"):
        budget.warn_long_training(7000.0, 8, "cpu", 2)  # 0.97 h of wall time: no warning
        assert not caplog.records
        budget.warn_long_training(3 * 3600.0, 8, "cpu", 2)
        assert "estimated at 1.5 hours on cpu (3.0 hours of one process, 2 at once)" in caplog.text
        budget.warn_long_training(3 * 3600.0, 8, "cpu", None)
    assert "3.0 hours on cpu, to be spread over the Ray cluster's workers" in caplog.text


def test_parallel_trainers_by_executor(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(budget.os, "cpu_count", lambda: 8)
    assert budget.parallel_trainers(ExecutorConfig(), 16) == 1
    assert budget.parallel_trainers(ExecutorConfig(kind="ray"), 16) == 8
    assert budget.parallel_trainers(ExecutorConfig(kind="ray"), 3) == 3  # no more than the models
    assert budget.parallel_trainers(ExecutorConfig(kind="ray", num_cpus=3), 16) == 2
    assert budget.parallel_trainers(ExecutorConfig(kind="ray", address="auto"), 16) is None
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    assert budget.parallel_trainers(ExecutorConfig(kind="ray"), 16) is None


def test_a_million_models_are_refused_before_anything_is_built(monkeypatch):
    monkeypatch.setattr(budget, "available_memory", lambda: 8 * 10**9)
    raw = {"dataset": {"name": "digits"}, "audit": {"num_models": 10**6, "pool_size": 100}}
    with pytest.raises(ConfigError, match=r"this audit needs about 160\.26 GB .* has 8\.00 GB"):
        prepare_audit(validate_config(raw))


def test_a_long_design_warns_before_training(monkeypatch, caplog):
    raw = {
        "dataset": {"name": "digits"},
        "audit": {"num_models": 4, "pool_size": 100},
        "train": {"epochs": 10**7},
    }
    with caplog.at_level(logging.WARNING, logger="mialens.audit.budget"):
        setup = prepare_audit(validate_config(raw))
    assert setup.keep.shape == (4, 100)
    assert "training the 4 models is estimated at" in caplog.text


def test_a_fully_cached_design_estimates_no_training(monkeypatch, caplog):
    """With every model in the cache nothing is trained: no FLOP count (it loads much of
    torch, seconds on a cached rerun) and no warning."""
    monkeypatch.setattr(ModelStore, "has", lambda self, key: True)
    monkeypatch.setattr(budget, "forward_flops", lambda *args: pytest.fail("FLOPs counted"))
    raw = {
        "dataset": {"name": "digits"},
        "audit": {"num_models": 4, "pool_size": 100},
        "train": {"epochs": 10**7},
    }
    with caplog.at_level(logging.WARNING, logger="mialens.audit.budget"):
        prepare_audit(validate_config(raw))
    assert "estimated at" not in caplog.text
