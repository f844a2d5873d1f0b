"""The monitor evaluation loads (or retrains) the audit's models under the audit's executor."""

import pytest

import mialens.workflows.defend
from mialens.workflows.config import validate_config
from mialens.workflows.defend import monitor_report


class _Loaded(Exception):
    """Stops monitor_report once it asked for the models."""


def test_monitor_loads_models_with_the_audits_executor(monkeypatch, tmp_path):
    config = validate_config(
        {
            "dataset": {"name": "digits"},
            "model": {"hidden": [16]},
            "train": {"epochs": 1},
            "audit": {"num_models": 2, "pool_size": 200, "val_size": 50, "attacks": ["loss"]},
            "executor": {"ensemble": "off", "ensemble_size": 1},
            "defenses": {"evaluate": [], "label_only_attacks": ["gap"], "monitor": {}},
        }
    )
    asked = {}

    def load_models(plan, store, device="cpu", executor=None):
        asked["executor"] = executor
        raise _Loaded

    monkeypatch.setattr(mialens.workflows.defend, "load_models", load_models)
    with pytest.raises(_Loaded):
        monitor_report(config)
    assert asked["executor"] == config.executor  # the groups a missing model is retrained in
