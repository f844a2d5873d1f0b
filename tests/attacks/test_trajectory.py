"""Trajectory attacks: TrajectoryMIA (Liu et al. 2022) and SeqMIA (Li et al. 2024)."""

import math

import numpy as np
import pytest
import torch
from threat_setup import assert_trained_to_convergence, evaluate, leaky_setup
from torch import nn

from mialens.attacks import trajectory
from mialens.attacks.base import QueryData, QueryReferences
from mialens.attacks.trajectory import SeqMIA, TrajectoryMIA, distill_trajectory
from mialens.errors import DataError
from mialens.signals.statistics import modified_entropy

# a two-epoch path of one sample with label 0: uniform, then (0.75, 0.25)
PATH = np.array([[[0.0, 0.0]], [[math.log(3.0), 0.0]]])
LABELS = np.array([0])


def test_trajectory_features_are_log_losses_per_epoch():
    feats = TrajectoryMIA()._features(PATH, LABELS)
    np.testing.assert_allclose(feats, [[math.log(math.log(2)), math.log(-math.log(0.75))]])
    raw = TrajectoryMIA(log_losses=False)._features(PATH, LABELS)
    np.testing.assert_allclose(raw, [[math.log(2), -math.log(0.75)]])


def test_seqmia_metrics_exact():
    seq = SeqMIA(log_losses=False)._features(PATH, LABELS)
    assert seq.shape == (1, 2, 5)  # (samples, epochs, metrics)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    expected = [
        [math.log(2), 0.5, 0.0, math.log(2), modified_entropy(PATH[0], LABELS)[0]],
        [-math.log(0.75), 0.75, 0.25, h, modified_entropy(PATH[1], LABELS)[0]],
    ]
    np.testing.assert_allclose(seq[0], expected, rtol=1e-12)


def test_distillation_follows_the_teacher():
    g = np.random.default_rng(0)
    x = g.normal(size=(200, 4)).astype(np.float32)
    teacher = np.stack([x[:, 0] * 3, -x[:, 0] * 3, x[:, 1]], axis=1)

    def build():
        return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))

    path = distill_trajectory(build, x, teacher, x[:20], epochs=10, seed=0, lr=1e-2)
    assert path.shape == (10, 20, 3)
    p_t = torch.softmax(torch.as_tensor(teacher[:20]), 1)
    kl = [
        torch.nn.functional.kl_div(torch.log_softmax(torch.as_tensor(p), 1), p_t, reduction="sum")
        for p in path
    ]
    assert kl[-1] < 0.6 * kl[0]
    again = distill_trajectory(build, x, teacher, x[:20], epochs=10, seed=0, lr=1e-2)
    np.testing.assert_array_equal(path, again)


@pytest.mark.parametrize(
    "attack", [TrajectoryMIA(epochs=8), SeqMIA(epochs=8)], ids=["trajectory", "seqmia"]
)
def test_trajectory_attacks_on_a_leaky_setup(attack):
    setup = leaky_setup("tabular")
    result = evaluate(attack, setup)
    assert result["auc"] > 0.75
    assert_trained_to_convergence(result["extras"])
    # the target's outputs on the distillation data, then on every audited sample
    assert result["queries"] == pytest.approx(1 + len(setup.data.population_x) / 160)


def test_too_few_shadow_rows_fail_before_distillation(monkeypatch):
    monkeypatch.setattr(trajectory, "distill_trajectory", None)  # must not be reached
    setup = leaky_setup("tabular")
    few = QueryData(setup.data.x[:40], setup.data.labels[:40], setup.data.population_x,
                    setup.data.population_labels, seed=0)  # fmt: skip
    refs = QueryReferences(setup.models[1:], setup.member[1:, :40], few)
    with pytest.raises(DataError, match="at least 10 held-out rows"):
        SeqMIA().fit(refs)
