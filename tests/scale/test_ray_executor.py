"""The Ray executor against a local Ray cluster started by the test: same numbers as local."""

import numpy as np
import pytest
import torch
from tests.text.test_text_audit import _config as _text_audit_config

from mialens.audit.executor import ExecutorConfig, map_tasks
from mialens.models.store import ModelStore
from mialens.workflows.audit import run_audit
from mialens.workflows.config import validate_config

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """A two-CPU Ray instance for this module (the executor attaches to it)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _config(executor, dataset="digits", hidden=32, pool=300):
    return validate_config(
        {
            "dataset": {"name": dataset},
            "model": {"hidden": [hidden]},
            "train": {"epochs": 3, "batch_size": 32, "dropout": 0.1},
            "audit": {
                "num_models": 4,
                "pool_size": pool,
                "bootstrap": 20,
                "attacks": ["loss", "attack_r", "lira_online", "rmia_offline"],
            },
            "executor": executor,
        }
    )


def _same(a, b):
    assert a.metrics == b.metrics
    for name in a.scores:
        np.testing.assert_array_equal(a.scores[name], b.scores[name])


@pytest.mark.parametrize(
    "ensemble", [{"ensemble_size": 2}, {"ensemble": "off"}], ids=["groups", "one-by-one"]
)
def test_ray_audit_equals_local_audit(local_ray, ensemble, monkeypatch, tmp_path):
    local = run_audit(_config(ensemble))
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(tmp_path))  # the workers train afresh
    on_ray = run_audit(_config({"kind": "ray", **ensemble}))
    assert not any(r["cached"] for r in on_ray.training)
    _same(local, on_ray)


def test_ray_location30_audit_equals_local(local_ray, location30_archive, monkeypatch, tmp_path):
    local = run_audit(_config({}, "location30", hidden=64, pool=1000))
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(tmp_path))
    on_ray = run_audit(_config({"kind": "ray", "ensemble_size": 2}, "location30", 64, 1000))
    _same(local, on_ray)


def test_results_come_in_order_and_task_errors_reach_the_caller(local_ray):
    def divide(numerator, denominator):  # nested: Ray ships it by value
        return numerator / denominator

    config = ExecutorConfig(kind="ray")
    finished = []
    results = map_tasks(divide, 12, [1, 3, 4], config, lambda i, r: finished.append(i))
    assert results == [12, 4, 3]
    assert sorted(finished) == [1, 3, 4]
    with pytest.raises(ZeroDivisionError):
        map_tasks(divide, 1, [1, 0], config)


def test_ray_text_audit_equals_local(local_ray, tmp_path):
    """Each LM a Ray task: the same weights, scores and metrics as trained in process."""
    local = run_audit(validate_config(_text_config(tmp_path / "local")))
    raw = _text_config(tmp_path / "ray", executor={"kind": "ray"})
    on_ray = run_audit(validate_config(raw))
    assert [r["model"] for r in on_ray.training] == [0, 1, 2, 3]
    assert not any(r["cached"] for r in on_ray.training)
    _same(local, on_ray)
    for a, b in zip(_lm_weights(tmp_path / "local"), _lm_weights(tmp_path / "ray"), strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def _text_config(folder, **sections):
    folder.mkdir()
    return _text_audit_config(folder, **sections)


def _lm_weights(folder):
    store = ModelStore(folder / "cache" / "models")
    keys = sorted(p.name for p in store.root.iterdir() if p.is_dir())
    return [store.load(key)[0] for key in keys]
