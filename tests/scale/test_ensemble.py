"""Batched ensemble training and inference: the same models as one-by-one training."""

import numpy as np
import pytest
import torch

from mialens.audit import training_plan as audit_models
from mialens.audit.design import prepare_audit
from mialens.audit.executor import ExecutorConfig
from mialens.augment import query_transforms
from mialens.errors import ConfigError
from mialens.models import ensemble as model_ensemble
from mialens.models.architectures import ModelConfig, build_model
from mialens.models.ensemble import (
    ensemble_blocker,
    ensemble_logits,
    group_size,
    train_ensemble,
)
from mialens.models.loop import batching_blocker
from mialens.models.recipe import AugmentConfig, DPConfig, EarlyStoppingConfig, TrainConfig
from mialens.models.training import train_model
from mialens.signals.queries import collect_logits
from mialens.targets.adapters import TorchTarget
from mialens.workflows.audit import run_audit
from mialens.workflows.config import validate_config


def _data(n=260, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)) % classes
    return x, y


def _subsets(n_pool, sizes, seed=1):
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(n_pool, size, replace=False)) for size in sizes]


def _mlp(d=6, classes=3, dropout=0.0, hidden=(12, 8)):
    return lambda: build_model(ModelConfig(hidden=list(hidden)), (d,), classes, dropout)


def _accuracy(build, state, x, y):
    model = build()
    model.load_state_dict(state)
    return (TorchTarget(model).logits(x).argmax(1) == y).mean()


def _assert_same_as_one_by_one(build, x, y, subsets, config, seeds, validation=None):
    batched = train_ensemble(build, x, y, subsets, config, seeds, validation)
    for k, (rows, seed) in enumerate(zip(subsets, seeds, strict=True)):
        single = train_model(build, x[rows], y[rows], config, seed, validation)
        got = batched[k]
        assert got.state_dict.keys() == single.state_dict.keys()
        for name, tensor in single.state_dict.items():
            torch.testing.assert_close(got.state_dict[name], tensor, rtol=1e-4, atol=1e-5)
        assert got.epochs_run == single.epochs_run
        assert got.best_epoch == single.best_epoch
        assert [h.keys() for h in got.history] == [h.keys() for h in single.history]
        for mine, theirs in zip(got.history, single.history, strict=True):
            for key, value in theirs.items():
                assert mine[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
        assert _accuracy(build, got.state_dict, x, y) == _accuracy(build, single.state_dict, x, y)
    return batched


# Sizes 97, 96, 64 and 70 end in batches of different sizes and come in different
# numbers of batches (models skip steps: one optimizer state per model); equal sizes
# step in lock-step (one optimizer over the stack).
UNEQUAL, EQUAL = [97, 96, 64, 70], [80, 80, 80]


@pytest.mark.parametrize(
    ("config", "sizes"),
    [
        (TrainConfig(epochs=3, batch_size=16), UNEQUAL),
        (TrainConfig(epochs=3, batch_size=16), EQUAL),
        (
            TrainConfig(
                epochs=3,
                batch_size=16,
                optimizer="sgd",
                lr=0.05,
                weight_decay=1e-3,
                schedule="cosine",
            ),
            UNEQUAL,
        ),
        (TrainConfig(epochs=3, batch_size=16, optimizer="sgd", momentum=0.0, lr=0.1), EQUAL),
        (
            TrainConfig(
                epochs=4,
                batch_size=32,
                optimizer="adamw",
                weight_decay=0.05,
                label_smoothing=0.1,
                schedule="step",
                dropout=0.3,
            ),
            UNEQUAL,
        ),
    ],
    ids=["adam", "adam-lockstep", "sgd-l2-cosine", "sgd-lockstep", "adamw-smoothing-dropout"],
)
def test_ensemble_matches_one_by_one_training(config, sizes):
    x, y = _data()
    subsets = _subsets(200, sizes)
    seeds = [3, 1, 4, 1][: len(sizes)]
    _assert_same_as_one_by_one(_mlp(dropout=config.dropout), x, y, subsets, config, seeds)


@pytest.mark.parametrize("restore_best", [True, False])
def test_each_model_stops_early_on_its_own(restore_best):
    x, y = _data(n=400)
    subsets = _subsets(300, [60, 61, 80, 40])
    stopper = EarlyStoppingConfig(patience=1, min_delta=1e-3, restore_best=restore_best)
    config = TrainConfig(epochs=25, batch_size=16, lr=0.05, early_stopping=stopper)
    batched = _assert_same_as_one_by_one(
        _mlp(hidden=(32,)), x, y, subsets, config, [5, 6, 7, 8], (x[300:], y[300:])
    )
    assert len({r.epochs_run for r in batched}) > 1  # the models stopped at different epochs
    assert all(r.epochs_run < 25 for r in batched)


def test_dropout_layers_keep_their_own_rate_and_unsorted_subsets():
    # A user's architecture whose dropout rates are not train.dropout (one of them 0,
    # which nn.Dropout implements without drawing), trained on shuffled, non-contiguous
    # subsets as the audit's keep mask gives them.
    def build():
        return torch.nn.Sequential(
            torch.nn.Linear(6, 12),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.0),
            torch.nn.Linear(12, 8),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.5),
            torch.nn.Linear(8, 3),
        )

    x, y = _data()
    rng = np.random.default_rng(2)
    subsets = [rng.permutation(200)[:size] for size in (97, 64, 70)]
    _assert_same_as_one_by_one(
        build, x, y, subsets, TrainConfig(epochs=2, batch_size=16), [7, 8, 9]
    )


def test_cnn_with_augmentation_and_dropout_matches_one_by_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 1, 6, 6)).astype(np.float32)
    y = (x[:, 0, :3].mean(axis=(1, 2)) > 0).astype(np.int64)
    config = TrainConfig(
        epochs=2, batch_size=16, dropout=0.25, augment=AugmentConfig(flip=True, shift=1)
    )
    model = ModelConfig(arch="cnn", channels=[4], hidden=[8])

    def build():
        return build_model(model, (1, 6, 6), 2, 0.25)

    _assert_same_as_one_by_one(build, x, y, _subsets(90, [45, 44, 40]), config, [0, 1, 2])


def test_ensemble_training_is_deterministic():
    x, y = _data()
    subsets = _subsets(200, [90, 91, 92])
    config = TrainConfig(epochs=2, batch_size=16, dropout=0.2)
    first = train_ensemble(_mlp(dropout=0.2), x, y, subsets, config, [10, 11, 12])
    again = train_ensemble(_mlp(dropout=0.2), x, y, subsets, config, [10, 11, 12])
    for a, b in zip(first, again, strict=True):
        assert a.history == b.history
        for name, tensor in a.state_dict.items():
            assert torch.equal(b.state_dict[name], tensor), name


def test_global_rng_is_untouched():
    x, y = _data()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    config = TrainConfig(epochs=1, batch_size=16, dropout=0.2)
    train_ensemble(_mlp(dropout=0.2), x, y, _subsets(200, [50, 50]), config, [0, 1])
    assert torch.equal(torch.get_rng_state(), before)


def test_ensemble_logits_match_per_model_logits():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 1, 5, 5)).astype(np.float32)
    arch = ModelConfig(arch="cnn", channels=[3], hidden=[6])

    def build():
        return build_model(arch, (1, 5, 5), 4, 0.5)

    states = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        states.append(build().state_dict())
    views = query_transforms(flip=True, shift=1)
    got = ensemble_logits(build, states, x, views, batch_size=16)
    assert got.shape == (3, 50, len(views), 4) and got.dtype == np.float32
    for k, state in enumerate(states):
        model = build()
        model.load_state_dict(state)
        expected = collect_logits(TorchTarget(model), x, views)
        np.testing.assert_allclose(got[k], expected, rtol=1e-5, atol=1e-6)


def test_recipes_without_a_batched_form_fall_back_with_a_reason():
    x, y = _data()
    dp = TrainConfig(epochs=1, dp=DPConfig(noise_multiplier=1.0))
    assert "DP-SGD" in batching_blocker(dp)
    size, reason = group_size(_mlp(), dp, (6,), 8, "cpu")
    assert size == 1 and "DP-SGD" in reason
    with pytest.raises(ConfigError, match="cannot be trained as an ensemble"):
        train_ensemble(_mlp(), x, y, _subsets(200, [50, 50]), dp, [0, 1])

    def with_batchnorm():
        return torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.BatchNorm1d(4))

    assert "buffers" in ensemble_blocker(with_batchnorm, TrainConfig(), (6,))


def test_group_size_rule():
    config = TrainConfig(batch_size=64)
    assert group_size(_mlp(), config, (6,), 16, "cpu") == (16, "groups of up to 16 models")
    assert group_size(_mlp(), config, (6,), 16, "cpu", max_size=5)[0] == 5
    assert group_size(_mlp(), config, (6,), 16, "cpu", mode="off")[0] == 1
    big = ModelConfig(arch="cnn", channels=[64, 128], hidden=[512])

    def build_big():
        return build_model(big, (3, 32, 32), 10)

    size, reason = group_size(build_big, config, (3, 32, 32), 16, "cpu")
    assert size == 1 and "not small" in reason
    assert group_size(build_big, config, (3, 32, 32), 16, "cpu", mode="on")[0] > 1


def _digits(executor=None, **train):
    raw = {
        "dataset": {"name": "digits"},
        "model": {"hidden": [32]},
        "train": {"epochs": 3, "batch_size": 32, **train},
        "audit": {"num_models": 4, "pool_size": 300, "bootstrap": 0, "attacks": ["loss"]},
        "executor": executor or {},
    }
    return validate_config(raw)


def test_audit_trains_in_groups_and_resumes_group_by_group(monkeypatch, tmp_path):
    config = _digits({"ensemble_size": 2})
    setup = prepare_audit(config)
    assert audit_models.model_groups(setup.plan, config.executor, "cpu") == [[0, 1], [2, 3]]
    calls = []
    real = model_ensemble.train_ensemble  # looked up there when a group trains

    def crash_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(model_ensemble, "train_ensemble", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_audit(config)
    monkeypatch.setattr(model_ensemble, "train_ensemble", real)
    resumed = run_audit(config)
    assert [r["cached"] for r in resumed.training] == [True, True, False, False]
    assert [r["ensemble"] for r in resumed.training] == [2, 2, 2, 2]
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(tmp_path / "fresh"))
    fresh = run_audit(config)
    np.testing.assert_array_equal(resumed.scores["loss"], fresh.scores["loss"])


def test_batched_and_one_by_one_audits_agree(monkeypatch, tmp_path):
    batched = run_audit(_digits({"ensemble": "on"}, dropout=0.2))
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(tmp_path))  # same store keys: train anew
    single = run_audit(_digits({"ensemble": "off"}, dropout=0.2))
    assert [r["ensemble"] for r in batched.training] == [4] * 4
    assert [r["ensemble"] for r in single.training] == [1] * 4
    np.testing.assert_allclose(batched.scores["loss"], single.scores["loss"], rtol=1e-4, atol=1e-5)
    assert batched.utility["train_accuracy"] == single.utility["train_accuracy"]


def test_executor_config_validation():
    with pytest.raises(ValueError, match=r"only applies to executor\.kind: ray"):
        ExecutorConfig(address="auto")
    assert ExecutorConfig(kind="ray", address="auto").address == "auto"
    # YAML reads a bare on/off as a boolean
    assert _digits({"ensemble": False}).executor.ensemble == "off"
    assert _digits({"ensemble": True}).executor.ensemble == "on"
