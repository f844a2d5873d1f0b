"""CUDA requests on Ray that cannot be met are refused before any training (a machine
without CUDA is refused locally by tests/test_config.py)."""

import pytest
import torch

from mialens.audit.executor import ExecutorConfig, map_tasks
from mialens.errors import ConfigError
from mialens.workflows.config import validate_config


def _raw(device, **executor):
    return {
        "dataset": {"name": "digits"},
        "model": {"hidden": [8]},
        "train": {"epochs": 1, "batch_size": 64},
        "audit": {"num_models": 4, "pool_size": 100, "bootstrap": 0, "device": device},
        "executor": executor,
    }


@pytest.fixture
def one_cuda_device(monkeypatch):
    """This machine seen as having one CUDA device (configurations validate as on a GPU)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize(
    ("device", "executor", "message"),
    [
        ("cuda", {}, r"needs executor\.num_gpus > 0 .* Ray hides every GPU"),
        ("cuda:0", {"num_gpus": 0}, r"needs executor\.num_gpus > 0"),
        ("cpu", {"num_gpus": 0.25}, r"reserves GPUs that audit\.device: cpu does not use"),
    ],
)
def test_ray_gpu_reservations_must_fit_the_device(one_cuda_device, device, executor, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(_raw(device, kind="ray", **executor))


def test_ray_tasks_see_their_gpus_from_cuda_0(monkeypatch, one_cuda_device):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"audit\.device: cuda:1 on Ray: .* use audit\.device"):
        validate_config(_raw("cuda:1", kind="ray", num_gpus=1))
    for device, gpus in (("cuda", 0.25), ("cuda:0", 1), ("cuda", 2)):
        config = validate_config(_raw(device, kind="ray", num_gpus=gpus))
        assert config.executor.num_gpus == gpus
    assert validate_config(_raw("cuda:1")).audit.device == "cuda:1"  # local: any device


def test_a_ray_cluster_without_gpus_is_refused_instead_of_waiting():
    ray = pytest.importorskip("ray")

    def never(context, item):  # nested: Ray ships it by value
        raise AssertionError("a task ran")

    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(ConfigError, match=r"executor\.num_gpus: 0\.25 GPU\(s\) per task"):
            map_tasks(never, None, [1, 2], ExecutorConfig(kind="ray", num_gpus=0.25))
    finally:
        ray.shutdown()
