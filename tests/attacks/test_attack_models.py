"""Attack models trained to convergence: early stopping on a held-out split."""

import numpy as np
import pytest
import torch
from torch import nn

from mialens.attacks.attack_models import (
    AttackModelParams,
    check_rows,
    fit_classifier,
    holdout_rows,
    train_binary,
    train_until_stopped,
)
from mialens.errors import DataError


class Counter(nn.Module):
    """A "network" whose single weight records the epoch it was trained to."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = nn.Parameter(torch.zeros(()), requires_grad=False)


def scripted(losses):
    """A net, its epoch step and a held-out loss that follows ``losses`` epoch by epoch."""
    net = Counter()

    def run_epoch():
        net.epoch += 1

    return net, run_epoch, lambda: losses[int(net.epoch) - 1]


def test_stops_after_patience_epochs_without_improvement_and_restores_the_best():
    # best at epoch 3 (2.0); epochs 4-6 do not beat it by min_delta: stop after epoch 6
    net, run_epoch, held = scripted([5.0, 3.0, 2.0, 2.5, 2.00005, 4.0, 1.0, 1.0])
    record = train_until_stopped(net, run_epoch, held, max_epochs=100, patience=3)
    assert (record.epochs, record.epochs_run, record.converged) == (3, 6, True)
    assert record.holdout_loss == 2.0
    assert float(net.epoch) == 3.0  # the best epoch's weights are back
    assert not net.training


def test_reports_the_cap_when_the_loss_keeps_falling():
    net, run_epoch, held = scripted([5.0 - e for e in range(10)])
    record = train_until_stopped(net, run_epoch, held, max_epochs=7, patience=3)
    assert (record.epochs, record.epochs_run, record.converged) == (7, 7, False)
    assert record.as_extra() == {
        "epochs": 7, "epochs_run": 7, "converged": False, "holdout_loss": -1.0,
    }  # fmt: skip


def test_holdout_rows_hold_out_each_stratum_and_refuse_too_few():
    strata = np.array([0] * 50 + [1] * 30 + [2] * 1)
    train, held = holdout_rows(81, 0.2, torch.Generator().manual_seed(0), strata)
    held_strata = strata[held.numpy()]
    assert [int((held_strata == s).sum()) for s in (0, 1, 2)] == [10, 6, 0]
    assert sorted(np.concatenate([train.numpy(), held.numpy()])) == list(range(81))
    with pytest.raises(DataError, match="at least 10 held-out rows"):
        holdout_rows(40, 0.2, torch.Generator().manual_seed(0))
    check_rows(50, 0.2)
    with pytest.raises(DataError, match=r"40 rows with holdout 0\.2 give 8"):
        check_rows(40, 0.2)


def noisy_task(n=600, seed=0):
    """Membership depends on the first feature, with label noise: an MLP over-fits."""
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, 8)).astype(np.float32)
    member = (x[:, 0] + g.normal(0, 1.0, n)) > 0
    return x, member


def fit_mlp(x, member, seed=3):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 1), nn.Flatten(0))
    record = train_binary(net, (torch.as_tensor(x),), member, seed, max_epochs=300, patience=10)
    return net, record


def test_train_binary_converges_deterministically_on_any_thread_count():
    x, member = noisy_task()
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        net1, rec1 = fit_mlp(x, member)
        torch.set_num_threads(2)
        net2, rec2 = fit_mlp(x, member)
    finally:
        torch.set_num_threads(previous)
    assert rec1 == rec2
    for a, b in zip(net1.state_dict().values(), net2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # the noisy task over-fits: held-out loss turns up and training stops before the cap
    assert rec1.converged and rec1.epochs + 10 == rec1.epochs_run < 300
    assert rec1.holdout_loss < 0.69  # it learned something (chance is log 2)


def test_fit_classifier_reports_training_per_model():
    x, member = noisy_task()
    groups = np.arange(len(x)) % 3
    stop = AttackModelParams(attack_max_epochs=200, attack_patience=5)
    flat = fit_classifier(x, member, "mlp", seed=0, stop=stop)
    assert flat.extra()["attack_training"]["epochs"] == flat.training.epochs
    assert flat.training.converged
    grouped = fit_classifier(x, member, "mlp", 0, stop, groups=groups, num_groups=4)
    assert grouped.training.converged and grouped.fallback_training is not None
    assert set(grouped.extra()) == {"attack_training", "attack_training_fallback"}
    again = fit_classifier(x, member, "mlp", 0, stop, groups=groups, num_groups=4)
    np.testing.assert_array_equal(grouped.decision(x, groups), again.decision(x, groups))
    for kind in ("logistic", "gbdt", "sklearn_mlp"):
        record = fit_classifier(x, member, kind, seed=0, stop=stop).training
        assert record.converged and 1 <= record.epochs < 200, kind
