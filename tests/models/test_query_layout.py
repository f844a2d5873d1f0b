"""Query-time logits use training's memory layout: channels-last convolutions on CUDA,
nothing changed on the CPU."""

import numpy as np
import pytest
import torch

from mialens.audit.design import prepare_audit
from mialens.audit.training_plan import load_models
from mialens.models.architectures import ModelConfig, build_model
from mialens.models.training import fixed_threads, predict_logits
from mialens.workflows.config import validate_config

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
CNN = ModelConfig(arch="cnn", channels=[4, 8], hidden=[16])


def _images(n=7, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 1, 8, 8)).astype(np.float32)


def _cnn():
    torch.manual_seed(3)
    return build_model(CNN, (1, 8, 8), 5)


def test_cpu_logits_are_the_plain_forward_pass_bit_for_bit():
    model, x = _cnn(), _images()
    model.eval()
    with torch.no_grad(), fixed_threads():  # predict_logits' thread count
        xt = torch.as_tensor(x)
        before = torch.cat([model(xt[i : i + 3]) for i in range(0, len(x), 3)]).numpy()
    model.train()
    np.testing.assert_array_equal(predict_logits(model, x, batch_size=3), before)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()  # the CPU layout is left alone


def _cnn_audit(device):
    return validate_config(
        {
            "dataset": {"name": "digits"},
            "model": CNN.model_dump(mode="json"),
            "train": {"epochs": 1, "batch_size": 64},
            "audit": {
                "num_models": 2,
                "pool_size": 40,
                "bootstrap": 0,
                "device": device,
                "attacks": ["loss"],
            },
            "executor": {"ensemble": "off"},
        }
    )


@CUDA
def test_cuda_logits_run_channels_last_and_match_the_cpu():
    model, x = _cnn(), _images()
    on_cpu = predict_logits(model, x)
    on_cuda = predict_logits(model.to("cuda"), x)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(on_cuda, on_cpu, rtol=1e-4, atol=1e-4)


@CUDA
def test_cuda_audit_models_are_queried_channels_last(tmp_path, monkeypatch):
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(tmp_path))
    setup = prepare_audit(_cnn_audit("cuda"))
    targets = load_models(setup.plan, setup.store, "cuda")
    for target in targets:
        conv = next(m for m in target.module.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
