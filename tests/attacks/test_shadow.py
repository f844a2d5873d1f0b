"""Shadow-model classifiers: Shokri et al. and ML-Leaks (Salem et al.)."""

import numpy as np
import pytest
import torch
from threat_setup import assert_trained_to_convergence, evaluate, leaky_setup

from mialens.attacks.attack_models import GroupedMLP, fit_classifier
from mialens.attacks.shadow import (
    MLLeaksAttack,
    MLLeaksTransferAttack,
    ShokriAttack,
    prediction_vectors,
    synthetic_task,
    top_k_sorted,
)


def test_top_k_sorted_posteriors_exact():
    probs = np.array([[0.1, 0.6, 0.05, 0.25], [0.4, 0.3, 0.2, 0.1]])
    np.testing.assert_array_equal(top_k_sorted(probs, 3), [[0.6, 0.25, 0.1], [0.4, 0.3, 0.2]])
    assert top_k_sorted(probs[:, :2], 3).shape == (2, 2)


def test_prediction_vectors_are_softmax_outputs():
    z = np.array([[np.log(3.0), 0.0]])
    np.testing.assert_allclose(prediction_vectors(z), [[0.75, 0.25]])
    np.testing.assert_allclose(prediction_vectors(z, "log_probabilities"), np.log([[0.75, 0.25]]))


def test_grouped_mlp_trains_each_group_on_its_own_rows_only():
    torch.manual_seed(0)
    net = GroupedMLP(3, 4, 5)
    x = torch.randn(3, 2, 4)
    out = net(x)
    assert out.shape == (3, 2)
    out[0].sum().backward()  # a loss on group 0's rows
    assert net.w1.grad[0].abs().sum() > 0
    assert net.w1.grad[1:].abs().sum() == 0 and net.b2.grad[1:].abs().sum() == 0
    # inference by group equals the batched forward
    flat = x.reshape(6, 4)
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(
        net.logits(flat, groups).numpy(), out.detach().reshape(6).numpy(), rtol=1e-5
    )


def test_per_class_classifiers_learn_per_class_rules():
    # members have a high first feature in class 0 and a low one in class 1: only a
    # per-class model can separate both
    g = np.random.default_rng(0)
    n = 2000
    groups = g.integers(2, size=n)
    member = g.random(n) < 0.5
    sign = np.where(groups == 0, 1.0, -1.0)
    x = np.stack([sign * np.where(member, 1.0, -1.0) + g.normal(0, 0.5, n), g.normal(size=n)], 1)
    for kind in ("mlp", "logistic"):
        model = fit_classifier(x, member, kind, seed=0, groups=groups, num_groups=2)
        acc = ((model.decision(x, groups) > 0) == member).mean()
        assert acc > 0.9, kind
    flat = fit_classifier(x, member, "logistic", seed=0)
    assert ((flat.decision(x) > 0) == member).mean() < 0.6


def test_synthetic_task_has_the_data_shape():
    binary = (np.random.default_rng(0).random((50, 30)) < 0.2).astype(np.float32)
    x, y = synthetic_task(binary, 5, 100, seed=0)
    assert x.shape == (100, 30) and set(np.unique(x)) <= {0.0, 1.0}
    assert y.min() >= 0 and y.max() < 5
    images = np.random.default_rng(0).random((50, 1, 4, 4)).astype(np.float32)
    xi, _ = synthetic_task(images, 3, 20, seed=1)
    assert xi.shape == (20, 1, 4, 4) and xi.min() >= images.min() and xi.max() <= images.max()
    np.testing.assert_array_equal(synthetic_task(binary, 5, 100, seed=0)[0], x)


@pytest.mark.parametrize(
    "attack",
    [
        ShokriAttack(),
        ShokriAttack(classifier="logistic"),
        ShokriAttack(classifier="gbdt", features="log_probabilities"),
        MLLeaksAttack(),
        MLLeaksAttack(classifier="sklearn_mlp", shadows=2),
        MLLeaksTransferAttack(),
    ],
    ids=["shokri", "shokri-logistic", "shokri-gbdt", "ml-leaks", "ml-leaks-sk", "transfer"],
)
def test_shadow_attacks_on_a_leaky_setup(attack):
    result = evaluate(attack, leaky_setup("tabular"))
    assert result["auc"] > 0.7
    assert result["queries"] == 1.0
    assert_trained_to_convergence(result["extras"])
