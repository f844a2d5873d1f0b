"""Tests of the trainer (mialens.models.training) and the architectures."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from mialens.errors import ConfigError
from mialens.models.architectures import MLP, ModelConfig, SmallCNN, build_model
from mialens.models.loop import lr_factor
from mialens.models.recipe import AugmentConfig, DPConfig, EarlyStoppingConfig, TrainConfig
from mialens.models.training import predict_logits, train_model


def _separable(n: int = 64, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two well-separated Gaussian blobs: class = sign of the first feature."""
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(n, d)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    x[:, 0] += np.where(y == 1, 2.0, -2.0)
    return x, y


def _mlp_builder(d: int = 4, classes: int = 2, hidden=(8,), dropout: float = 0.0):
    config = ModelConfig(arch="mlp", hidden=list(hidden))
    return lambda: build_model(config, (d,), classes, dropout=dropout)


def _states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _load(build, state: dict[str, torch.Tensor]) -> nn.Module:
    model = build()
    model.load_state_dict(state)
    return model


# --- determinism ------------------------------------------------------------------------


def test_same_seed_gives_bit_identical_weights():
    x, y = _separable()
    build = _mlp_builder(dropout=0.3)  # dropout exercises the seeded RNG too
    config = TrainConfig(epochs=3, batch_size=16, dropout=0.3)
    first = train_model(build, x, y, config, seed=7)
    second = train_model(build, x, y, config, seed=7)
    assert _states_equal(first.state_dict, second.state_dict)
    assert first.history == second.history


def test_different_seed_gives_different_weights():
    x, y = _separable()
    build = _mlp_builder()
    config = TrainConfig(epochs=2, batch_size=16)
    a = train_model(build, x, y, config, seed=0)
    b = train_model(build, x, y, config, seed=1)
    assert not _states_equal(a.state_dict, b.state_dict)


def test_global_rng_state_is_untouched():
    x, y = _separable()
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002 - the legacy global state is what we check
    torch_before = torch.get_rng_state()
    numpy_before = np.random.get_state()[1].copy()  # noqa: NPY002
    train_model(_mlp_builder(dropout=0.2), x, y, TrainConfig(epochs=2, batch_size=16), seed=3)
    assert torch.equal(torch.get_rng_state(), torch_before)
    assert np.array_equal(np.random.get_state()[1], numpy_before)  # noqa: NPY002


def test_result_weights_are_detached_cpu_copies():
    x, y = _separable()
    result = train_model(_mlp_builder(), x, y, TrainConfig(epochs=1), seed=0)
    for tensor in result.state_dict.values():
        assert tensor.device.type == "cpu"
        assert not tensor.requires_grad
        assert tensor.is_contiguous()
    assert result.epochs_run == 1
    assert result.best_epoch is None
    assert result.epsilon is None
    assert result.seconds > 0


# --- learning -----------------------------------------------------------------------------


def test_training_reduces_loss_on_separable_problem():
    x, y = _separable(n=128)
    config = TrainConfig(epochs=15, batch_size=16, lr=1e-2)
    result = train_model(_mlp_builder(hidden=(16,)), x, y, config, seed=0)
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 15
    assert losses[-1] < 0.5 * losses[0]
    assert result.history[-1]["train_accuracy"] >= 0.95
    model = _load(_mlp_builder(hidden=(16,)), result.state_dict)
    acc = (predict_logits(model, x).argmax(1) == y).mean()
    assert acc >= 0.95


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_every_optimizer_trains(optimizer):
    x, y = _separable(n=64)
    config = TrainConfig(optimizer=optimizer, lr=0.05, epochs=8, batch_size=16, weight_decay=1e-4)
    result = train_model(_mlp_builder(), x, y, config, seed=0)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_float64_inputs_and_validation_are_accepted():
    # numpy's default dtype is float64: both the training and the validation features
    # must be converted to the model's float32.
    x, y = _separable()
    xv, yv = _separable(seed=1)
    result = train_model(
        _mlp_builder(),
        x.astype(np.float64),
        y,
        TrainConfig(epochs=2, batch_size=16),
        seed=0,
        validation=(xv.astype(np.float64), yv),
    )
    assert all(math.isfinite(h["val_loss"]) for h in result.history)


def test_validation_metrics_are_logged_without_early_stopping():
    x, y = _separable()
    xv, yv = _separable(seed=1)
    result = train_model(_mlp_builder(), x, y, TrainConfig(epochs=3), seed=0, validation=(xv, yv))
    assert result.epochs_run == 3
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    for record in result.history:
        assert set(record) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}
        assert 0.0 <= record["val_accuracy"] <= 1.0


def test_label_smoothing_runs_and_changes_training():
    x, y = _separable()
    plain = train_model(_mlp_builder(), x, y, TrainConfig(epochs=3, batch_size=16), seed=0)
    smooth = train_model(
        _mlp_builder(), x, y, TrainConfig(epochs=3, batch_size=16, label_smoothing=0.2), seed=0
    )
    assert all(math.isfinite(h["train_loss"]) for h in smooth.history)
    assert not _states_equal(plain.state_dict, smooth.state_dict)
    # With smoothing the loss cannot approach 0: its minimum for 2 classes and eps=0.2 is
    # the entropy of (0.9, 0.1) = 0.325.
    assert smooth.history[-1]["train_loss"] > 0.32


def test_empty_training_set_is_an_error():
    x = np.zeros((0, 4), np.float32)
    y = np.zeros(0, np.int64)
    with pytest.raises(ConfigError, match="empty"):
        train_model(_mlp_builder(), x, y, TrainConfig(epochs=1), seed=0)


def test_train_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValidationError):
        TrainConfig(epoch=3)
    with pytest.raises(ValidationError):
        TrainConfig(lr=0.0)
    with pytest.raises(ValidationError):
        TrainConfig(label_smoothing=1.0)


# --- architectures --------------------------------------------------------------------------


def test_mlp_builds_for_tabular_input_and_exposes_penultimate_features():
    model = build_model(ModelConfig(arch="mlp", hidden=[16, 8]), (5,), 3)
    assert isinstance(model, MLP)
    x = torch.randn(7, 5)
    assert model(x).shape == (7, 3)
    feats = model.features(x)
    assert feats.shape == (7, 8)
    assert torch.allclose(model.head(feats), model(x))


def test_mlp_flattens_image_input():
    model = build_model(ModelConfig(arch="mlp", hidden=[4]), (1, 6, 6), 10)
    x = torch.randn(2, 1, 6, 6)
    assert model(x).shape == (2, 10)
    assert model.features(x).shape == (2, 4)
    assert model.body[1].in_features == 36


def test_mlp_without_hidden_layers_is_linear():
    model = build_model(ModelConfig(arch="mlp", hidden=[]), (5,), 3)
    x = torch.randn(4, 5)
    assert model.features(x).shape == (4, 5)
    assert model(x).shape == (4, 3)


def test_mlp_dropout_layers_are_added():
    model = build_model(ModelConfig(arch="mlp", hidden=[8, 8]), (5,), 3, dropout=0.5)
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2
    model = build_model(ModelConfig(arch="mlp", hidden=[8, 8]), (5,), 3)
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_small_cnn_builds_for_images(activation):
    config = ModelConfig(arch="cnn", channels=[4, 6], hidden=[10], activation=activation)
    model = build_model(config, (3, 8, 8), 5)
    assert isinstance(model, SmallCNN)
    x = torch.randn(2, 3, 8, 8)
    assert model(x).shape == (2, 5)
    feats = model.features(x)
    assert feats.shape == (2, 10)
    assert torch.allclose(model.head(feats), model(x))
    # 8x8 -> 4x4 -> 2x2 after two pools, 6 channels: the first dense layer sees 24 inputs
    dense = [m for m in model.body if isinstance(m, nn.Linear)]
    assert dense[0].in_features == 6 * 2 * 2


def test_small_cnn_stops_pooling_at_one_pixel():
    config = ModelConfig(arch="cnn", channels=[2, 2, 2], hidden=[])
    model = build_model(config, (1, 2, 2), 3)  # 2x2 -> 1x1, then no more pooling
    x = torch.randn(4, 1, 2, 2)
    assert model(x).shape == (4, 3)
    assert model.features(x).shape == (4, 2)


def test_cnn_on_tabular_input_is_a_config_error():
    with pytest.raises(ConfigError, match=r"arch: mlp"):
        build_model(ModelConfig(arch="cnn"), (12,), 2)


def test_model_config_rejects_non_positive_widths():
    with pytest.raises(ValidationError, match="positive"):
        ModelConfig(hidden=[8, 0])
    with pytest.raises(ValidationError, match="positive"):
        ModelConfig(channels=[-1])


# --- early stopping ----------------------------------------------------------------------


def _random_label_problem():
    """Random labels: a wide MLP overfits and the validation loss rises from epoch 1."""
    rs = np.random.default_rng(1)
    x = rs.normal(size=(40, 10)).astype(np.float32)
    y = rs.integers(0, 2, 40)
    xv = rs.normal(size=(40, 10)).astype(np.float32)
    yv = rs.integers(0, 2, 40)
    return x, y, xv, yv, _mlp_builder(d=10, hidden=(64,))


def _val_loss(build, state, xv, yv) -> float:
    logits = torch.as_tensor(predict_logits(_load(build, state), xv))
    return F.cross_entropy(logits, torch.as_tensor(yv)).item()


def test_early_stopping_stops_and_restores_best_weights():
    x, y, xv, yv, build = _random_label_problem()
    patience = 3
    config = TrainConfig(
        epochs=40, batch_size=8, lr=1e-2, early_stopping=EarlyStoppingConfig(patience=patience)
    )
    result = train_model(build, x, y, config, seed=0, validation=(xv, yv))
    val_losses = [h["val_loss"] for h in result.history]
    assert result.epochs_run < 40
    assert len(result.history) == result.epochs_run
    best = int(np.argmin(val_losses)) + 1
    assert result.best_epoch == best
    assert result.epochs_run == best + patience
    # the returned weights are those of the best epoch, not of the last one
    restored = _val_loss(build, result.state_dict, xv, yv)
    assert restored == pytest.approx(val_losses[best - 1], rel=1e-5)
    assert restored < val_losses[-1]


def test_early_stopping_without_restore_keeps_last_weights():
    x, y, xv, yv, build = _random_label_problem()
    config = TrainConfig(
        epochs=40,
        batch_size=8,
        lr=1e-2,
        early_stopping=EarlyStoppingConfig(patience=2, restore_best=False),
    )
    result = train_model(build, x, y, config, seed=0, validation=(xv, yv))
    assert result.epochs_run < 40
    last = _val_loss(build, result.state_dict, xv, yv)
    assert last == pytest.approx(result.history[-1]["val_loss"], rel=1e-5)


def test_early_stopping_on_validation_accuracy_runs():
    x, y = _separable()
    xv, yv = _separable(seed=1)
    config = TrainConfig(
        epochs=30,
        batch_size=16,
        lr=1e-2,
        early_stopping=EarlyStoppingConfig(monitor="val_accuracy", patience=2),
    )
    result = train_model(_mlp_builder(), x, y, config, seed=0, validation=(xv, yv))
    accs = [h["val_accuracy"] for h in result.history]
    # the best epoch is the first one reaching the highest accuracy
    assert result.best_epoch == int(np.argmax(accs)) + 1
    assert result.epochs_run <= 30


def test_early_stopping_without_validation_is_a_config_error():
    x, y = _separable()
    config = TrainConfig(epochs=3, early_stopping=EarlyStoppingConfig())
    with pytest.raises(ConfigError, match="validation"):
        train_model(_mlp_builder(), x, y, config, seed=0)


# --- learning-rate schedules -------------------------------------------------------------


def test_constant_schedule_factor_is_one():
    config = TrainConfig(epochs=10)
    assert [lr_factor(config, e) for e in range(10)] == [1.0] * 10


def test_cosine_schedule_factors():
    config = TrainConfig(epochs=10, schedule="cosine")
    assert lr_factor(config, 0) == pytest.approx(1.0)
    # 0.5 * (1 + cos(pi / 5)) = 0.5 * (1 + 0.80901699) = 0.90450850
    assert lr_factor(config, 2) == pytest.approx(0.9045084972)
    assert lr_factor(config, 5) == pytest.approx(0.5)
    # 0.5 * (1 + cos(9 pi / 10)) = 0.5 * (1 - 0.95105652) = 0.02447174
    assert lr_factor(config, 9) == pytest.approx(0.0244717419)
    factors = [lr_factor(config, e) for e in range(10)]
    assert all(a > b for a, b in itertools.pairwise(factors))


def test_step_schedule_factors():
    # epochs=8: x0.1 from epoch 4 (50%), x0.01 from epoch 6 (75%)
    config = TrainConfig(epochs=8, schedule="step")
    factors = [lr_factor(config, e) for e in range(8)]
    assert factors == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])
    # epochs=10: 10 // 2 = 5 and 30 // 4 = 7
    config = TrainConfig(epochs=10, schedule="step")
    assert lr_factor(config, 4) == 1.0
    assert lr_factor(config, 5) == pytest.approx(0.1)
    assert lr_factor(config, 6) == pytest.approx(0.1)
    assert lr_factor(config, 7) == pytest.approx(0.01)


def test_schedule_changes_training():
    x, y = _separable()
    base = dict(optimizer="sgd", lr=0.1, epochs=4, batch_size=16)
    constant = train_model(_mlp_builder(), x, y, TrainConfig(**base), seed=0)
    step = train_model(_mlp_builder(), x, y, TrainConfig(**base, schedule="step"), seed=0)
    # identical for the first half of the epochs, different afterwards
    assert constant.history[:2] == step.history[:2]
    assert not _states_equal(constant.state_dict, step.state_dict)


# --- augmentation --------------------------------------------------------------------------


def _image_problem():
    rs = np.random.default_rng(0)
    x = rs.normal(size=(24, 1, 6, 6)).astype(np.float32)
    y = (x[:, 0, :, :3].mean(axis=(1, 2)) > 0).astype(np.int64)
    build = lambda: build_model(  # noqa: E731
        ModelConfig(arch="cnn", channels=[3], hidden=[8]), (1, 6, 6), 2
    )
    return x, y, build


def test_augmentation_path_runs_for_images_and_is_seeded():
    x, y, build = _image_problem()
    config = TrainConfig(epochs=2, batch_size=8, augment=AugmentConfig(flip=True, shift=2))
    a = train_model(build, x, y, config, seed=0)
    b = train_model(build, x, y, config, seed=0)
    plain = train_model(build, x, y, TrainConfig(epochs=2, batch_size=8), seed=0)
    assert all(math.isfinite(h["train_loss"]) for h in a.history)
    assert _states_equal(a.state_dict, b.state_dict)
    assert not _states_equal(a.state_dict, plain.state_dict)


def test_augmentation_is_ignored_for_tabular_input():
    x, y = _separable()
    plain = train_model(_mlp_builder(), x, y, TrainConfig(epochs=2, batch_size=16), seed=0)
    augmented = train_model(
        _mlp_builder(),
        x,
        y,
        TrainConfig(epochs=2, batch_size=16, augment=AugmentConfig(flip=True, shift=1)),
        seed=0,
    )
    assert _states_equal(plain.state_dict, augmented.state_dict)


# --- DP-SGD --------------------------------------------------------------------------------


def _dp_train(epochs: int = 2, seed: int = 0, **dp):
    x, y = _separable(n=64)
    config = TrainConfig(epochs=epochs, batch_size=16, dp=DPConfig(**dp))
    return train_model(_mlp_builder(), x, y, config, seed=seed)


def test_dp_reports_finite_positive_epsilon():
    result = _dp_train(noise_multiplier=1.5)
    assert result.epsilon is not None
    assert math.isfinite(result.epsilon)
    assert result.epsilon > 0
    # the trained weights belong to the plain module, not Opacus' wrapper
    assert not any(k.startswith("_module") for k in result.state_dict)
    _load(_mlp_builder(), result.state_dict)


def test_dp_epsilon_grows_with_epochs_and_shrinks_with_noise():
    eps_1 = _dp_train(epochs=1, noise_multiplier=1.5).epsilon
    eps_3 = _dp_train(epochs=3, noise_multiplier=1.5).epsilon
    eps_3_noisier = _dp_train(epochs=3, noise_multiplier=3.0).epsilon
    assert eps_1 < eps_3
    assert eps_3_noisier < eps_3


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
def test_dp_target_epsilon_spends_the_target():
    result = _dp_train(epochs=2, target_epsilon=3.0)
    assert result.epsilon == pytest.approx(3.0, rel=0.05)
    assert result.epsilon <= 3.0 * 1.05


def test_dp_training_is_deterministic_by_seed():
    a = _dp_train(noise_multiplier=1.0, seed=5)
    b = _dp_train(noise_multiplier=1.0, seed=5)
    c = _dp_train(noise_multiplier=1.0, seed=6)
    assert _states_equal(a.state_dict, b.state_dict)
    assert a.epsilon == b.epsilon
    assert not _states_equal(a.state_dict, c.state_dict)


def test_dp_leaves_global_rng_untouched():
    torch.manual_seed(99)
    before = torch.get_rng_state()
    _dp_train(epochs=1, noise_multiplier=1.0)
    assert torch.equal(torch.get_rng_state(), before)


def test_dp_silences_opacus_noise_warnings():
    # _make_private means to hide Opacus' "secure RNG" notice and torch's full backward
    # hook notice; both must be filtered where they are raised.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _dp_train(epochs=1, noise_multiplier=1.0)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "ecure" in m or "backward hook" in m], messages


def test_dp_rejects_unsupported_architecture():
    x, y = _separable()

    def build():
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))

    config = TrainConfig(epochs=1, batch_size=16, dp=DPConfig(noise_multiplier=1.0))
    with pytest.raises(ConfigError, match="DP-SGD"):
        train_model(build, x, y, config, seed=0)


def test_dp_config_needs_exactly_one_budget():
    with pytest.raises(ValidationError, match="exactly one"):
        DPConfig()
    with pytest.raises(ValidationError, match="exactly one"):
        DPConfig(noise_multiplier=1.0, target_epsilon=2.0)
    assert DPConfig(noise_multiplier=1.0).target_epsilon is None
    assert DPConfig(target_epsilon=2.0).noise_multiplier is None
    with pytest.raises(ValidationError):
        DPConfig(noise_multiplier=1.0, delta=1.0)


# --- divergence ----------------------------------------------------------------------------


def test_divergence_raises_config_error():
    # Plain SGD with a huge step on huge inputs overflows float32 within the first epoch.
    # (Adam's step is bounded by lr, so it does not overflow reliably.)
    x, y = _separable()
    config = TrainConfig(optimizer="sgd", lr=1e6, epochs=3, batch_size=16)
    with pytest.raises(ConfigError, match="non-finite loss"):
        train_model(_mlp_builder(), x * 1e6, y, config, seed=0)


# --- predict_logits ------------------------------------------------------------------------


def test_predict_logits_batches_in_eval_mode_and_restores_mode():
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden=[8]), (4,), 3, dropout=0.5)
    model.train()
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    out = predict_logits(model, x, batch_size=3)
    assert model.training
    assert out.dtype == np.float32
    assert out.shape == (10, 3)
    model.eval()
    with torch.no_grad():
        expected = model(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_dp_counts_every_poisson_step_including_empty_batches():
    # 12 samples at batch size 1: sampling rate 1/12, so about a third of the 12 steps
    # per epoch draw no sample; each is still a noisy step the accountant must count.
    from opacus.accountants import RDPAccountant

    x, y = _separable(n=12)
    config = TrainConfig(epochs=3, batch_size=1, dp={"noise_multiplier": 1.0})
    result = train_model(_mlp_builder(), x, y, config, seed=0)
    reference = RDPAccountant()
    reference.history = [(1.0, 1 / 12, 3 * 12)]
    assert result.epsilon == pytest.approx(reference.get_epsilon(1e-5))


def test_epoch_hook_sees_each_epoch_without_changing_training():
    x, y = _separable()
    config = TrainConfig(epochs=3, batch_size=16, dropout=0.0)
    seen = []

    def hook(epoch, model):
        assert not model.training
        seen.append((epoch, model(torch.as_tensor(x[:2])).detach().clone()))

    with_hook = train_model(_mlp_builder(dropout=0.2), x, y, config, seed=1, on_epoch=hook)
    without = train_model(_mlp_builder(dropout=0.2), x, y, config, seed=1)
    assert [e for e, _ in seen] == [1, 2, 3]
    assert _states_equal(with_hook.state_dict, without.state_dict)


def test_relaxloss_objective_follows_algorithm_1():
    from mialens.models.objectives import relaxloss

    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([0, 2])
    ce = torch.nn.functional.cross_entropy(logits, y)

    def high(logits, y, epoch):  # the batch objective is the mean of the per-sample losses
        return relaxloss(logits, y, epoch, alpha=0.5, upper=1.0).mean()

    def low(logits, y, epoch):
        return relaxloss(logits, y, epoch, alpha=5.0, upper=1.0).mean()

    # epoch 1 (even, counting from 0): |L - alpha|, here as its gradient sign(L - alpha) dL
    assert high(logits, y, 1).item() == pytest.approx(ce.item() * np.sign(ce.item() - 0.5))
    grad = torch.autograd.functional.jacobian(lambda z: high(z, y, 1), logits)
    expected_grad = torch.autograd.functional.jacobian(
        lambda z: (F.cross_entropy(z, y) - 0.5).abs(), logits
    )
    torch.testing.assert_close(grad, expected_grad)
    # epoch 2 with L > alpha: plain cross-entropy
    assert high(logits, y, 2).item() == pytest.approx(ce.item())
    # epoch 2 with L <= alpha: soft labels keep p_y and share 1 - p_y over the other classes
    p = torch.softmax(logits, 1)
    soft = torch.stack(
        [
            torch.tensor([p[0, 0], (1 - p[0, 0]) / 2, (1 - p[0, 0]) / 2]),
            torch.tensor([(1 - p[1, 2]) / 2, (1 - p[1, 2]) / 2, p[1, 2]]),
        ]
    )
    expected = -(soft * torch.log_softmax(logits, 1)).sum(1).mean()
    assert low(logits, y, 2).item() == pytest.approx(expected.item())


def test_training_time_defences_validate_and_reduce_loss_gap():
    from mialens.metrics import auc

    with pytest.raises(ValueError, match="cannot be combined"):
        TrainConfig(relaxloss={"alpha": 1.0}, dp={"noise_multiplier": 1.0})
    with pytest.raises(ConfigError, match="reference set"):
        x, y = _separable()
        train_model(_mlp_builder(), x, y, TrainConfig(adversarial_regularization={}), seed=0)

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 20))
    labels = rng.integers(0, 4, 900)
    feats = (centers[labels] + rng.normal(0, 3.0, (900, 20))).astype(np.float32)
    train, ref = slice(0, 300), slice(600, 900)  # 300:600 are the non-members scored
    build = _mlp_builder(d=20, classes=4, hidden=(256,))

    def loss_auc(config):
        result = train_model(
            build, feats[train], labels[train], config, seed=0,
            reference=(feats[ref], labels[ref]),
        )  # fmt: skip
        model = build()
        model.load_state_dict(result.state_dict)
        with torch.no_grad():
            out = model(torch.as_tensor(feats[:600]))
        losses = torch.nn.functional.cross_entropy(
            out, torch.as_tensor(labels[:600]), reduction="none"
        ).numpy()
        return auc(-losses, np.arange(600) < 300)

    plain = loss_auc(TrainConfig(epochs=60, batch_size=32))
    relax = loss_auc(TrainConfig(epochs=60, batch_size=32, relaxloss={"alpha": 1.0}))
    advreg = loss_auc(
        TrainConfig(epochs=60, batch_size=32, adversarial_regularization={"alpha": 3.0})
    )
    assert plain > 0.7
    assert relax < plain - 0.05
    assert advreg < plain - 0.05


def test_sample_weights_and_smoothing():
    x, y = _separable()
    config = TrainConfig(epochs=2, batch_size=16)
    plain = train_model(_mlp_builder(), x, y, config, seed=4)
    unit = train_model(
        _mlp_builder(), x, y, config, seed=4, sample_weight=np.ones(len(x)),
        sample_smoothing=np.zeros(len(x)),
    )  # fmt: skip
    for key in plain.state_dict:  # all-ones weights and zero smoothing: plain training
        torch.testing.assert_close(plain.state_dict[key], unit.state_dict[key])
    zero = train_model(_mlp_builder(), x, y, config, seed=4, sample_weight=np.zeros(len(x)))
    init = train_model(_mlp_builder(), x, y, TrainConfig(epochs=1, lr=1e-12), seed=4)
    for key in zero.state_dict:  # zero weights: no gradient, the weights stay at init
        torch.testing.assert_close(zero.state_dict[key], init.state_dict[key], atol=1e-6, rtol=0)

    from mialens.models.objectives import CrossEntropy

    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    loss = CrossEntropy()(logits, labels, torch.tensor([1.0, 0.5]), torch.tensor([0.0, 0.2]))
    loss = loss.mean()
    logp = torch.log_softmax(logits, 1)
    expected = (-logp[0, 0] + 0.5 * (0.8 * -logp[1, 0] + 0.2 * -logp[1].mean())) / 2
    assert loss.item() == pytest.approx(expected.item())
    with pytest.raises(ConfigError, match=r"train\.dp"):
        train_model(
            _mlp_builder(), x, y, TrainConfig(dp={"noise_multiplier": 1.0}), seed=0,
            sample_weight=np.ones(len(x)),
        )  # fmt: skip
    with pytest.raises(ConfigError, match="one value per training sample"):
        train_model(_mlp_builder(), x, y, config, seed=0, sample_weight=np.ones(3))


def _clipped_gradient(model, x, y, extras, hook=None):
    """Run the loop's clipped backward pass of one step on ``model``."""
    from mialens.models.loop import Run, _clipped_backward
    from mialens.models.objectives import Objective
    from mialens.models.step import Batch, Step
    from mialens.models.training import _SingleLearner

    learner = _SingleLearner(model, None, "cpu", None, TrainConfig())
    batch = Batch(x[None], y[None], torch.ones((1, len(y)), dtype=torch.bool), None, extras[None])
    batch.counts = torch.tensor([len(y)])
    run = Run(learner, None, [], Objective(TrainConfig()), Step(grad_hook=hook), clip_noise=0.0)
    _clipped_backward(learner, batch, run, epoch=1)


def test_clipped_step_matches_the_hand_computed_gradient():
    seen = []
    # one linear layer, two samples: g_i = (softmax(W x_i + b) - onehot(y_i)) (x_i, 1)
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))
        model.bias.copy_(torch.tensor([0.1, -0.2]))
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    y = torch.tensor([0, 1])
    clip = torch.tensor([0.5, float("inf")])  # sample 0 clipped to norm 0.5, sample 1 not
    extras = torch.stack([torch.ones(2), torch.zeros(2), clip], dim=1)
    _clipped_gradient(model, x, y, extras, hook=seen.append)
    expected_w, expected_b = torch.zeros(2, 2), torch.zeros(2)
    for i in range(2):
        delta = torch.softmax(model(x[i]).detach(), 0) - torch.nn.functional.one_hot(y[i], 2)
        g_w, g_b = torch.outer(delta, x[i]), delta
        norm = torch.sqrt(g_w.pow(2).sum() + g_b.pow(2).sum())
        c = min(1.0, (clip[i] / norm).item())
        expected_w += c * g_w / 2
        expected_b += c * g_b / 2
        # the gradient hook sees sample i's clipped gradient c_i g_i
        torch.testing.assert_close(seen[0].per_sample["weight"][i], c * g_w)
        torch.testing.assert_close(seen[0].per_sample["bias"][i], c * g_b)
    torch.testing.assert_close(model.weight.grad, expected_w)
    torch.testing.assert_close(model.bias.grad, expected_b)
    torch.testing.assert_close(seen[0].summed["weight"], 2 * expected_w)  # the sum before noise
    assert (clip[0] / torch.sqrt(sum(g.pow(2).sum() for g in (g_w, g_b)))) < 10  # clip active


def test_per_sample_clipping_trains_like_plain_when_unclipped_and_limits_the_flagged():
    x, y = _separable()
    config = TrainConfig(epochs=2, batch_size=16)
    plain = train_model(_mlp_builder(), x, y, config, seed=4)
    unclipped = train_model(
        _mlp_builder(), x, y, config, seed=4, sample_clip_norm=np.full(len(x), np.inf)
    )
    for key in plain.state_dict:  # no clip, no noise: the plain gradient step
        torch.testing.assert_close(plain.state_dict[key], unclipped.state_dict[key])
    # flip the labels of 10 shuffled samples; clipping them hard (no noise) keeps the
    # model from fitting them, while the plain model memorises them
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(x), 10, replace=False)
    y_noisy = y.copy()
    y_noisy[flipped] = 1 - y_noisy[flipped]
    long = TrainConfig(epochs=150, batch_size=16, lr=0.01)
    clip = np.full(len(x), np.inf)
    clip[flipped] = 1e-3

    def fitted(result):
        model = _mlp_builder(hidden=(64,))()
        model.load_state_dict(result.state_dict)
        with torch.no_grad():
            pred = model(torch.as_tensor(x[flipped], dtype=torch.float32)).argmax(1).numpy()
        return (pred == y_noisy[flipped]).mean()

    free = train_model(_mlp_builder(hidden=(64,)), x, y_noisy, long, seed=1)
    held = train_model(
        _mlp_builder(hidden=(64,)), x, y_noisy, long, seed=1, sample_clip_norm=clip,
        clip_noise=0.0,
    )  # fmt: skip
    assert fitted(free) >= 0.5 and fitted(held) <= 0.1
    noisy = train_model(_mlp_builder(), x, y, config, seed=4, sample_clip_norm=clip, clip_noise=1.0)
    again = train_model(_mlp_builder(), x, y, config, seed=4, sample_clip_norm=clip, clip_noise=1.0)
    assert _states_equal(noisy.state_dict, again.state_dict)  # seeded noise
    with pytest.raises(ConfigError, match="positive"):
        train_model(_mlp_builder(), x, y, config, seed=0, sample_clip_norm=np.zeros(len(x)))
    with pytest.raises(ConfigError, match="RelaxLoss"):
        train_model(
            _mlp_builder(), x, y, TrainConfig(relaxloss={"alpha": 0.5}), seed=0,
            sample_clip_norm=clip,
        )  # fmt: skip
