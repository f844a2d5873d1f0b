"""White-box attacks: per-sample gradients, the calibrated gradient norm, Nasr et al."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from threat_setup import evaluate, leaky_setup, loss_baseline
from torch import nn

from mialens.attacks import whitebox
from mialens.attacks.base import QueryData, QueryReferences
from mialens.attacks.whitebox import (
    GradientNormAttack,
    NasrAttack,
    layer_gradient_norms,
    nasr_features,
    parameter_layers,
    per_sample_gradients,
    resolve_layers,
)
from mialens.errors import DataError
from mialens.models.architectures import MLP, SmallCNN
from mialens.targets import TorchTarget


def manual_norms(module, x, y, layers):
    """Per-layer gradient norms from one backward pass per sample."""
    groups = dict(module.named_parameters())
    out = []
    for xi, yi in zip(x, y, strict=True):
        module.zero_grad()
        F.cross_entropy(module(torch.as_tensor(xi[None])), torch.as_tensor([yi])).backward()
        row = []
        for layer in layers:
            names = parameter_layers(module)[layer]
            row.append(np.sqrt(sum((groups[n].grad.double() ** 2).sum().item() for n in names)))
        out.append(row)
    return np.array(out)


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda: MLP(6, 3, [5, 4], "tanh", 0.0), (6,)),
        (lambda: SmallCNN((1, 4, 4), 3, [2], [4], "relu", 0.0), (1, 4, 4)),
    ],
)
def test_per_layer_gradient_norms_match_one_backward_pass_per_sample(build, shape):
    torch.manual_seed(0)
    module = build().eval()
    g = np.random.default_rng(0)
    x = g.normal(size=(7, *shape)).astype(np.float32)
    y = g.integers(3, size=7)
    layers = resolve_layers(module, "all")
    got = layer_gradient_norms(module, x, y, layers, chunk=3)
    np.testing.assert_allclose(got, manual_norms(module, x, y, layers), rtol=1e-4)


def test_linear_fast_path_equals_torch_func():
    torch.manual_seed(1)
    module = MLP(5, 3, [4], "relu", 0.0).eval()
    x = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    layers = resolve_layers(module, "all")
    assert layers == ["body.1", "head"]
    fast = layer_gradient_norms(module, x, y, layers)
    groups = parameter_layers(module)
    (g,) = list(per_sample_gradients(module, x, y, layers, chunk=6))
    slow = np.stack(
        [
            torch.sqrt(sum(g[p].flatten(1).pow(2).sum(1) for p in groups[name])).numpy()
            for name in layers
        ],
        axis=1,
    )
    np.testing.assert_allclose(fast, slow, rtol=1e-10)
    # Nasr's gradient input for the head: the per-sample weight gradient, bias last
    feats = nasr_features(module, x, y, ["head"], ["head"], 3)
    expected = torch.cat([g["head.weight"], g["head.bias"][:, :, None]], dim=2).float().numpy()
    np.testing.assert_allclose(feats[0], expected, rtol=1e-5, atol=1e-8)
    assert feats[1].shape == (6, 3) and feats[2].shape == (6, 2) and feats[3].shape == (6, 3)


def test_resolve_layers():
    module = MLP(5, 3, [4, 4], "relu", 0.0)
    assert resolve_layers(module, 1) == ["head"]
    assert resolve_layers(module, ["body.1"]) == ["body.1"]
    with pytest.raises(DataError, match="unknown layers"):
        resolve_layers(module, ["nope"])


def test_calibrated_gradient_norm_exact(monkeypatch):
    # log-norms v[r, n] of three reference models and the target, by module
    modules = [nn.Linear(1, 2) for _ in range(4)]
    v = {id(modules[0]): [5.0, 1.0], id(modules[1]): [1.0, 2.0], id(modules[2]): [3.0, 0.0]}
    v[id(modules[3])] = [0.0, 1.0]

    def fake(module, x, y, layers, chunk=256):
        return np.exp(np.array(v[id(module)]))[:, None]

    monkeypatch.setattr(whitebox, "layer_gradient_norms", fake)
    member = np.array([[True, False], [False, True], [False, False]])
    data = QueryData(np.zeros((2, 1), np.float32), np.array([0, 1]))
    refs = QueryReferences([TorchTarget(m, 2) for m in modules[:3]], member, data)
    attack = GradientNormAttack().fit(refs)
    # OUT log-norms: sample 0 {1, 3} -> mean 2; sample 1 {1, 0} -> mean 0.5
    # pooled within-sample variance: (1 + 1 + 0.25 + 0.25) / 4
    sigma = np.sqrt(2.5 / 4)
    target = TorchTarget(modules[3], 2)
    np.testing.assert_allclose(attack.score(target, data), [2 / sigma, -0.5 / sigma])
    assert target.queries == 2  # one forward/backward pass per sample
    all_in = QueryReferences(refs.models, member | np.array([True, False]), data)
    with pytest.raises(DataError, match="did not train"):  # no OUT model: no NaN scores
        GradientNormAttack().fit(all_in)
    plain = GradientNormAttack(calibration="none").fit()
    np.testing.assert_allclose(plain.score(TorchTarget(modules[3], 2), data), [0.0, -1.0])
    assert set(attack.extra()["layer_auc"]) == {"(root)"}


def test_white_box_attacks_need_a_torch_module():
    from mialens.targets import CallableTarget

    data = QueryData(np.zeros((2, 1), np.float32), np.array([0, 1]))
    with pytest.raises(DataError, match="PyTorch"):
        GradientNormAttack(calibration="none").fit().score(CallableTarget(lambda b: b, 1), data)


def test_gradient_norm_beats_loss_on_a_leaky_setup():
    setup = leaky_setup("tabular")
    ours = evaluate(GradientNormAttack(), setup)
    loss = loss_baseline(setup)
    assert ours["auc"] > 0.8
    assert ours["tpr10"] >= loss["tpr10"]
    assert ours["queries"] == 1.0


def test_nasr_on_a_leaky_setup_reports_its_layers():
    setup = leaky_setup("tabular")
    assert evaluate(NasrAttack(), setup)["auc"] > 0.75
    fitted = NasrAttack().fit(QueryReferences(setup.models[1:], setup.member[1:], setup.data))
    extra = fitted.extra()
    assert set(extra["layer_auc"]) == {"body.1", "head"}
    assert set(extra["component_auc_drop"]) == {
        "gradient:head", "activation:body.1", "activation:head", "loss", "label",
    }  # fmt: skip
    assert extra["holdout_auc"] > 0.7
    assert extra["attack_training"]["converged"]
