"""Tests of the shared training loop's seams (mialens.models.loop): the pluggable loss,
the gradient hook before noise, mixed precision, the batching rule and early stopping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mialens.errors import ConfigError
from mialens.models.architectures import ModelConfig, build_model
from mialens.models.ensemble import group_size, train_ensemble
from mialens.models.loop import Patience, batching_blocker, minibatch_epoch
from mialens.models.recipe import TrainConfig
from mialens.models.step import Step
from mialens.models.training import train_model


def _data(n=120, d=5, classes=3, seed=0):
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(n, d)).astype(np.float32)
    y = rs.integers(0, classes, n)
    x[np.arange(n), y] += 2.0  # learnable: the label's feature is raised
    return x, y


def _mlp(d=5, classes=3, hidden=(8,)):
    config = ModelConfig(hidden=list(hidden))
    return lambda: build_model(config, (d,), classes)


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _plain_ce(logits, targets, weights):
    return F.cross_entropy(logits, targets, reduction="none")


def _squared_error(logits, targets, weights):  # a different loss: Brier score
    onehot = F.one_hot(targets, logits.shape[1]).float()
    return (torch.softmax(logits, 1) - onehot).pow(2).sum(1)


def test_custom_loss_equal_to_cross_entropy_trains_bit_identically():
    x, y = _data()
    config = TrainConfig(epochs=3, batch_size=16, optimizer="sgd", lr=0.1)
    default = train_model(_mlp(), x, y, config, seed=2)
    custom = train_model(_mlp(), x, y, config, seed=2, step=Step(loss=_plain_ce))
    assert _same(default.state_dict, custom.state_dict)
    other = train_model(_mlp(), x, y, config, seed=2, step=Step(loss=_squared_error))
    assert not _same(default.state_dict, other.state_dict)


def test_custom_loss_in_a_stack_matches_one_by_one():
    x, y = _data()
    subsets = [np.sort(np.random.default_rng(k).choice(len(x), m, replace=False)) for k, m in
               enumerate((60, 45))]  # fmt: skip
    config = TrainConfig(epochs=3, batch_size=16, optimizer="sgd", lr=0.1)
    step = Step(loss=_squared_error)
    batched = train_ensemble(_mlp(), x, y, subsets, config, [4, 5], step=step)
    for rows, seed, result in zip(subsets, [4, 5], batched, strict=True):
        single = train_model(_mlp(), x[rows], y[rows], config, seed, step=step)
        for key, value in single.state_dict.items():
            torch.testing.assert_close(result.state_dict[key], value, rtol=1e-5, atol=1e-6)
    plain = train_ensemble(_mlp(), x, y, subsets, config, [4, 5])
    assert not _same(plain[0].state_dict, batched[0].state_dict)


def test_custom_loss_gets_the_per_sample_weights():
    x, y = _data()
    seen = []

    def weighted(logits, targets, weights):
        seen.append(weights)
        return weights * F.cross_entropy(logits, targets, reduction="none")

    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(x))
    config = TrainConfig(epochs=1, batch_size=16)
    custom = train_model(_mlp(), x, y, config, 3, sample_weight=weights, step=Step(loss=weighted))
    default = train_model(_mlp(), x, y, config, 3, sample_weight=weights)
    assert all(w is not None and w.shape == (16,) for w in seen[:-1])
    assert sorted(torch.cat(seen).tolist()) == pytest.approx(sorted(weights.astype(np.float32)))
    for key, value in default.state_dict.items():  # the built-in weighted CE, unsmoothed
        torch.testing.assert_close(custom.state_dict[key], value)
    with pytest.raises(ConfigError, match="custom loss"):
        train_model(
            _mlp(), x, y, config, 3, sample_smoothing=np.zeros(len(x)), step=Step(loss=weighted)
        )


def test_dp_gradient_hook_sees_clipped_per_sample_gradients_before_noise():
    x, y = _data()
    config = TrainConfig(
        epochs=1, batch_size=24, dp={"noise_multiplier": 1.0, "max_grad_norm": 0.3}
    )
    steps = []

    def hook(grads):
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.per_sample.values()))
        for name, summed in grads.summed.items():
            torch.testing.assert_close(summed, grads.per_sample[name].sum(0))
        steps.append(norms)

    watched = train_model(_mlp(), x, y, config, seed=1, step=Step(grad_hook=hook))
    plain = train_model(_mlp(), x, y, config, seed=1)
    assert len(steps) == 5  # one call per (Poisson) step
    norms = torch.cat(steps)
    assert len(norms) > 0 and (norms <= 0.3 * (1 + 1e-5)).all() and norms.max() > 0.29
    assert _same(watched.state_dict, plain.state_dict)  # looking changes nothing

    def canary(grads):  # a DP-auditing canary: a fixed gradient of norm C added before noise
        for summed in grads.summed.values():
            summed.add_(0.3 / summed.numel() ** 0.5 / len(grads.summed) ** 0.5)

    audited = train_model(_mlp(), x, y, config, seed=1, step=Step(grad_hook=canary))
    assert not _same(audited.state_dict, plain.state_dict)


def test_gradient_hook_needs_per_sample_clipping():
    x, y = _data()
    hook = Step(grad_hook=lambda grads: None)
    with pytest.raises(ConfigError, match="per-sample clipping"):
        train_model(_mlp(), x, y, TrainConfig(epochs=1), seed=0, step=hook)
    with pytest.raises(ConfigError, match="per-sample clipping"):
        train_ensemble(_mlp(), x, y, [np.arange(50), np.arange(50, 90)], TrainConfig(), [0, 1],
                       step=hook)  # fmt: skip
    seen = []
    clip = np.where(np.arange(len(x)) % 2 == 0, 0.05, np.inf)
    train_model(_mlp(), x, y, TrainConfig(epochs=1, batch_size=40), 0, sample_clip_norm=clip,
                step=Step(grad_hook=seen.append))  # fmt: skip
    assert len(seen) == 3 and all(g.per_sample["head.weight"].shape[0] == 40 for g in seen)


def test_dp_noise_hook_sees_the_noisy_sum_that_plain_sgd_steps_with():
    x, y = _data()
    config = TrainConfig(
        epochs=2, batch_size=24, optimizer="sgd", momentum=0.0, lr=0.1,
        dp={"noise_multiplier": 0.7, "max_grad_norm": 0.3},
    )  # fmt: skip
    clipped, noisy = [], []
    step = Step(
        grad_hook=lambda g: clipped.append({n: s.clone() for n, s in g.summed.items()}),
        noisy_hook=lambda g: noisy.append((g, {n: s.clone() for n, s in g.noisy.items()})),
    )
    watched = train_model(_mlp(), x, y, config, seed=1, step=step)
    plain = train_model(_mlp(), x, y, config, seed=1)
    assert _same(watched.state_dict, plain.state_dict)  # looking changes nothing
    assert len(noisy) == len(clipped) == 10  # every step, Poisson-sampled at q = 1/5
    seen = noisy[0][0]
    assert (seen.noise_multiplier, seen.max_grad_norm, seen.expected_batch_size) == (0.7, 0.3, 24)
    noise = torch.cat(
        [
            (v - c[n]).flatten()
            for (_, s), c in zip(noisy, clipped, strict=True)
            for n, v in s.items()
        ]
    )
    assert abs(noise.std().item() - 0.7 * 0.3) < 0.02 and abs(noise.mean().item()) < 0.02
    torch.manual_seed(1)
    initial = _mlp()().state_dict()
    for name, value in plain.state_dict.items():  # plain SGD: theta_T = theta_0 - lr sum / B
        total = sum(s[name.replace("module.", "")] for _, s in noisy)
        torch.testing.assert_close(value, initial[name] - 0.1 * total / 24, rtol=1e-5, atol=1e-6)


def test_noise_hook_needs_dp_sgd():
    x, y = _data()
    clip = np.full(len(x), 0.5)
    for kwargs in ({}, {"sample_clip_norm": clip}):
        with pytest.raises(ConfigError, match=r"noise hook .* needs DP-SGD: set train\.dp"):
            train_model(_mlp(), x, y, TrainConfig(epochs=1), 0, step=Step(noisy_hook=print),
                        **kwargs)  # fmt: skip
    with pytest.raises(ConfigError, match=r"noise hook .* needs DP-SGD: set train\.dp"):
        train_ensemble(_mlp(), x, y, [np.arange(50), np.arange(50, 90)], TrainConfig(), [0, 1],
                       step=Step(noisy_hook=print))  # fmt: skip


def test_mixed_precision_is_a_no_op_on_cpu():
    x, y = _data()
    config = TrainConfig(epochs=2, batch_size=16)
    step = Step(mixed_precision=True)
    assert _same(
        train_model(_mlp(), x, y, config, 0, step=step).state_dict,
        train_model(_mlp(), x, y, config, 0).state_dict,
    )
    subsets = [np.arange(60), np.arange(30, 100)]
    mixed = train_ensemble(_mlp(), x, y, subsets, config, [0, 1], step=step)
    full = train_ensemble(_mlp(), x, y, subsets, config, [0, 1])
    assert all(_same(a.state_dict, b.state_dict) for a, b in zip(mixed, full, strict=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mixed_precision_runs_the_forward_pass_in_bfloat16_on_cuda():
    x, y = _data()
    dtypes = []
    step = Step(loss=lambda z, t, w: dtypes.append(z.dtype) or _plain_ce(z, t, w))
    mixed = Step(loss=step.loss, mixed_precision=True)
    config = TrainConfig(epochs=1, batch_size=60)
    train_model(_mlp(), x, y, config, 0, device="cuda", step=mixed)
    assert set(dtypes) == {torch.float32}  # logits are cast back for the loss
    with mixed.autocast("cuda"):
        assert torch.is_autocast_enabled("cuda")


def test_one_rule_decides_which_recipes_batch():
    everything_shared = TrainConfig(
        optimizer="sgd", schedule="cosine", dropout=0.1, label_smoothing=0.1,
        augment={"flip": True}, early_stopping={"patience": 2}, weight_decay=1e-4,
    )  # fmt: skip
    assert batching_blocker(everything_shared) is None
    for single in (
        {"dp": {"noise_multiplier": 1.0}},
        {"relaxloss": {"alpha": 0.5}},
        {"adversarial_regularization": {}},
    ):
        name = next(iter(single))
        assert f"train.{name}" in batching_blocker(TrainConfig(**single))
    assert "per-sample" in batching_blocker(TrainConfig(), per_sample=True)
    size, reason = group_size(_mlp(), TrainConfig(), (5,), 8, "cpu", per_sample=True)
    assert size == 1 and "per-sample" in reason


def test_patience_follows_the_rule_by_hand():
    stop = Patience(2, patience=2, min_delta=0.1)
    # model 0: 1.0 (best), 0.95 (not 0.1 lower: wait 1), 0.85 (best), 0.9, 0.9 -> stops
    marks = [stop.improved(0, e, v) for e, v in enumerate([1.0, 0.95, 0.85, 0.9, 0.9], 1)]
    assert marks == [True, False, True, False, False]
    assert stop.best_epoch[0] == 3 and stop.stopped(0) and not stop.stopped(1)
    assert stop.best[1] == float("inf") and stop.best_epoch[1] is None


def test_minibatch_epoch_visits_each_row_once_in_seeded_order():
    seen = []
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.0)

    def batch_loss(idx):
        seen.append(idx)
        return param.sum() * 0

    rows = torch.tensor([7, 3, 11, 5, 2])
    minibatch_epoch(opt, rows, 2, torch.Generator().manual_seed(0), batch_loss)
    assert [len(b) for b in seen] == [2, 2, 1]
    order = rows[torch.randperm(5, generator=torch.Generator().manual_seed(0))]
    assert torch.equal(torch.cat(seen), order)
