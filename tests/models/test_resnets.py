"""Tests of the benchmark networks (mialens.models.resnets) and their GPU path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from mialens.augment import Transform
from mialens.errors import ConfigError
from mialens.models.architectures import ModelConfig, build_model
from mialens.models.ensemble import ensemble_logits, group_size, train_ensemble
from mialens.models.loop import module_to_device, recipe_step, to_device
from mialens.models.recipe import DPConfig, TrainConfig
from mialens.models.resnets import ResNet18, WideResNet
from mialens.models.step import Step
from mialens.models.training import predict_logits, train_model

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
TINY = ModelConfig(arch="wrn", depth=10, widen=1)  # WRN-10-1: one block per group


def _images(n: int = 24, shape=(1, 8, 8), classes: int = 3, seed: int = 0):
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(n, *shape)).astype(np.float32)
    y = rs.integers(0, classes, size=n)
    return x, y


def _builder(config: ModelConfig = TINY, shape=(1, 8, 8), classes: int = 3, dropout=0.0):
    return lambda: build_model(config, shape, classes, dropout)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- architecture -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "shape", "width"),
    [
        (TINY, (1, 28, 28), 64),
        (ModelConfig(arch="wrn", depth=16, widen=2), (3, 32, 32), 128),
        (ModelConfig(arch="resnet18"), (3, 8, 8), 512),
    ],
)
def test_logits_and_features_have_the_expected_shapes(config, shape, width):
    model = build_model(config, shape, 7)
    x = torch.zeros((5, *shape))
    assert model(x).shape == (5, 7)
    assert model.features(x).shape == (5, width)


@pytest.mark.parametrize(
    ("depth", "widen", "millions"),
    # Zagoruyko & Komodakis (2016), Table 4 (CIFAR-10, 10 classes)
    [(40, 1, 0.6), (40, 2, 2.2), (40, 4, 8.9), (16, 8, 11.0), (28, 10, 36.5)],
)
def test_wrn_parameter_counts_match_the_paper(depth, widen, millions):
    model = WideResNet(3, 10, depth, widen)
    assert round(_count(model) / 1e6, 1) == millions


def test_lira_and_resnet18_parameter_counts():
    # WRN-28-2, LiRA's released architecture: 1.47M (as with batch norm: GroupNorm has the
    # same two parameters per channel); the CIFAR ResNet-18: 11,173,962 parameters
    assert _count(WideResNet(3, 10, 28, 2)) == 1_467_610
    assert _count(ResNet18(3, 10)) == 11_173_962


def test_wrn_config_defaults_and_dumps():
    wrn = ModelConfig(arch="wrn")
    assert (wrn.depth, wrn.widen, wrn.norm_groups) == (16, 4, 16)
    assert ModelConfig(arch="resnet18").norm_groups == 32
    # the other architectures dump (and key the model store) as before these fields
    assert set(ModelConfig(arch="cnn").model_dump()) == {"arch", "hidden", "channels", "activation"}
    assert ModelConfig.model_validate(wrn.model_dump()) == wrn


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"arch": "wrn", "depth": 12}, r"6N \+ 4"),
        ({"arch": "mlp", "depth": 16}, "model.depth does not apply to model.arch 'mlp'"),
        ({"arch": "resnet18", "widen": 2}, "model.widen does not apply"),
    ],
)
def test_bad_residual_fields_are_refused(fields, message):
    with pytest.raises(ValidationError, match=message):
        ModelConfig(**fields)


def test_bad_builds_are_refused_with_advice():
    with pytest.raises(ConfigError, match="divisible"):
        build_model(ModelConfig(arch="wrn", depth=10, widen=1, norm_groups=3), (1, 8, 8), 3)
    with pytest.raises(ConfigError, match="needs image inputs"):
        build_model(ModelConfig(arch="wrn"), (20,), 3)
    with pytest.raises(ConfigError, match="no dropout"):
        build_model(ModelConfig(arch="resnet18"), (3, 8, 8), 3, dropout=0.3)


def test_wrn_dropout_sits_between_the_convolutions_of_each_block():
    model = build_model(TINY, (1, 8, 8), 3, dropout=0.3)
    dropouts = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts == ["blocks.0.dropout", "blocks.1.dropout", "blocks.2.dropout"]


def test_output_of_a_sample_does_not_depend_on_its_batch():
    model = build_model(TINY, (1, 8, 8), 3)
    x = torch.as_tensor(_images(6)[0])
    alone = predict_logits(model, x[:1])
    together = predict_logits(model, x)[:1]
    np.testing.assert_allclose(alone, together, rtol=1e-5, atol=1e-6)


# --- DP-SGD -------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [TINY, ModelConfig(arch="resnet18", norm_groups=8)])
def test_opacus_accepts_the_networks(config):
    from opacus.validators import ModuleValidator

    assert ModuleValidator.validate(build_model(config, (3, 8, 8), 3), strict=False) == []


def test_a_dp_sgd_run_trains_a_wrn_and_spends_epsilon():
    x, y = _images(16)
    build = _builder()
    recipe = TrainConfig(
        optimizer="sgd", lr=0.1, epochs=1, batch_size=8, dp=DPConfig(noise_multiplier=1.0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train_model(build, x, y, recipe, seed=3)
    assert 0 < result.epsilon < np.inf
    torch.manual_seed(3)
    initial = build().state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in result.state_dict.items())


def test_mixed_precision_is_refused_with_dp_sgd():
    x, y = _images(16)
    recipe = TrainConfig(epochs=1, mixed_precision=True, dp=DPConfig(noise_multiplier=1.0))
    with pytest.raises(ConfigError, match="mixed_precision cannot be combined with train"):
        train_model(_builder(), x, y, recipe, seed=0)


# --- ensembles ----------------------------------------------------------------------------


def test_ensemble_training_of_wrns_equals_one_by_one():
    x, y = _images(40)
    build = _builder(dropout=0.3)
    recipe = TrainConfig(
        optimizer="sgd", lr=0.1, weight_decay=5e-4, schedule="cosine", epochs=2,
        batch_size=8, dropout=0.3, augment={"flip": True, "shift": 2},
    )  # fmt: skip
    subsets = [np.array([31, 2, 17, 8, 25, 11, 38, 5, 20, 14]), np.array([0, 33, 9, 27, 4, 36])]
    seeds = [5, 2]
    batched = train_ensemble(build, x, y, subsets, recipe, seeds)
    for subset, seed, result in zip(subsets, seeds, batched, strict=True):
        single = train_model(build, x[subset], y[subset], recipe, seed)
        for name, value in single.state_dict.items():
            torch.testing.assert_close(result.state_dict[name], value, rtol=1e-4, atol=1e-5)
    stacked = ensemble_logits(build, [r.state_dict for r in batched], x[:5], [Transform()])
    model = build()
    model.load_state_dict(batched[1].state_dict)
    np.testing.assert_allclose(stacked[1, :, 0], predict_logits(model, x[:5]), atol=1e-5)


def test_auto_trains_large_wrns_one_by_one_on_cpu():
    build = _builder(ModelConfig(arch="wrn", depth=16, widen=2), (1, 28, 28), 10)
    size, reason = group_size(build, TrainConfig(batch_size=256), (1, 28, 28), 8, "cpu")
    assert size == 1 and "not small" in reason


# --- the GPU path (the same functions run on a CPU, where they change nothing) ------------


def test_device_helpers_leave_cpu_tensors_and_models_as_they_are():
    x = torch.randn(2, 1, 4, 4)
    assert to_device(x, "cpu") is x
    model = build_model(TINY, (1, 4, 4), 3)
    assert module_to_device(model, "cpu") is model
    assert model.stem.weight.is_contiguous()


def test_train_mixed_precision_switches_on_the_steps_autocast():
    assert recipe_step(None, TrainConfig(mixed_precision=True)).mixed_precision
    assert not recipe_step(None, TrainConfig()).mixed_precision
    hooked = Step(loss=lambda z, t, w: z.sum(1))
    assert recipe_step(hooked, TrainConfig(mixed_precision=True)).loss is hooked.loss
    assert "mixed_precision" not in TrainConfig().model_dump()


def test_mixed_precision_changes_nothing_on_a_cpu():
    x, y = _images(16)
    plain = TrainConfig(epochs=1, batch_size=8)
    mixed = plain.model_copy(update={"mixed_precision": True})
    a = train_model(_builder(), x, y, plain, seed=1).state_dict
    b = train_model(_builder(), x, y, mixed, seed=1).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)


@CUDA
def test_cuda_images_and_convolutions_are_channels_last():
    x = to_device(torch.randn(2, 1, 4, 4), "cuda")
    assert x.is_contiguous(memory_format=torch.channels_last)
    model = module_to_device(build_model(TINY, (1, 4, 4), 3), "cuda")
    assert model.stem.weight.is_contiguous(memory_format=torch.channels_last)


@CUDA
def test_cuda_training_in_bfloat16_is_deterministic_and_float32_out():
    x, y = _images(32)
    recipe = TrainConfig(
        optimizer="sgd", lr=0.1, epochs=2, batch_size=8, mixed_precision=True,
        augment={"flip": True, "shift": 2},
    )  # fmt: skip
    first = train_model(_builder(), x, y, recipe, seed=4, device="cuda")
    second = train_model(_builder(), x, y, recipe, seed=4, device="cuda")
    assert all(torch.equal(first.state_dict[k], v) for k, v in second.state_dict.items())
    assert all(
        v.dtype == torch.float32 and v.device.type == "cpu" for v in first.state_dict.values()
    )
    model = module_to_device(_builder()(), "cuda")
    model.load_state_dict(first.state_dict)
    assert predict_logits(model, x).dtype == np.float32


@CUDA
def test_cuda_ensemble_matches_one_by_one():
    x, y = _images(32)
    recipe = TrainConfig(optimizer="sgd", lr=0.05, epochs=1, batch_size=8)
    subsets = [np.array([30, 3, 17, 9, 22, 12, 1, 27]), np.array([5, 19, 0, 24, 14, 8, 31, 11])]
    batched = train_ensemble(_builder(), x, y, subsets, recipe, [0, 1], device="cuda")
    single = train_model(_builder(), x[subsets[0]], y[subsets[0]], recipe, 0, device="cuda")
    for name, value in single.state_dict.items():
        torch.testing.assert_close(batched[0].state_dict[name], value, rtol=1e-3, atol=1e-4)


# --- the shipped configurations -----------------------------------------------------------


def test_the_wrn_examples_validate(monkeypatch):
    from pathlib import Path

    from mialens.workflows.config import load_config

    examples = Path(__file__).resolve().parents[2] / "examples"
    fashion = load_config(str(examples / "fashion_mnist_wrn.yaml"))
    assert (fashion.model.depth, fashion.model.widen, fashion.audit.num_models) == (16, 2, 8)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # device: cuda validates
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cifar = load_config(str(examples / "cifar10_wrn.yaml"))
    assert (cifar.model.depth, cifar.model.widen, cifar.audit.num_models) == (28, 2, 64)
    assert cifar.train.mixed_precision and cifar.audit.queries.flip


def test_ray_tasks_share_a_gpu_in_fractions_or_take_whole_ones():
    from mialens.audit.executor import ExecutorConfig

    assert ExecutorConfig(kind="ray", num_gpus=0.25).num_gpus == 0.25
    assert ExecutorConfig(kind="ray", num_gpus=2).num_gpus == 2
    with pytest.raises(ValidationError, match=r"fraction of one GPU or whole GPUs, not 1\.5"):
        ExecutorConfig(kind="ray", num_gpus=1.5)
