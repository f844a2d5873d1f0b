"""Quantile-regression attack (Bertran et al. 2023)."""

import math

import numpy as np
import pytest
import torch
from threat_setup import evaluate, leaky_setup
from torch import nn

from mialens.attacks.quantile import QuantileAttack, gaussian_nll, pinball


def test_gaussian_nll_and_pinball_exact():
    mu, log_sigma, s = torch.tensor([1.0]), torch.tensor([math.log(2.0)]), torch.tensor([3.0])
    assert gaussian_nll(mu, log_sigma, s).item() == pytest.approx(math.log(2) + 0.5)
    q = torch.tensor([1.0, 1.0])
    obs = torch.tensor([3.0, 0.0])
    np.testing.assert_allclose(pinball(q, obs, 0.9).numpy(), [0.9 * 2, 0.1 * 1])


def test_the_label_selects_the_regressor_head():
    attack = QuantileAttack()
    attack.num_classes_ = 3
    attack.net_ = nn.Identity()
    out = torch.arange(12.0).reshape(2, 6)  # per class (mu, log sigma)
    heads = attack._heads(out, torch.tensor([2, 0]))
    np.testing.assert_array_equal(heads.numpy(), [[4.0, 5.0], [6.0, 7.0]])


@pytest.mark.parametrize("loss", ["gaussian", "pinball"])
def test_quantile_regression_on_a_leaky_setup(loss):
    setup = leaky_setup("tabular")
    result = evaluate(QuantileAttack(loss=loss, alpha=0.1), setup)
    assert result["auc"] > 0.75
    assert result["queries"] == pytest.approx(1 + len(setup.data.population_x) / 160)
    assert QuantileAttack().needs.references == "none"


@pytest.mark.parametrize(
    ("loss", "expected"), [("gaussian", [(3 - 1) / 2, (2 + 1) / 4]), ("pinball", [3 - 1, 2 - 9])]
)
def test_score_is_the_hinge_against_the_regressed_quantile_exact(monkeypatch, loss, expected):
    from mialens.attacks.adversary_data import Standardizer
    from mialens.attacks.base import QueryData
    from mialens.targets import BlackBoxTarget, CallableTarget

    # features: 4 regressor outputs (class 0: mu, log sigma; class 1: mu, log sigma), then
    # the 2 target logits; the regressor is replaced by a read-out of the first columns
    x = np.array([[1, math.log(2), 9, 9, 3, 0], [9, 9, -1, math.log(4), 0, 2]], np.float32)
    y = np.array([0, 1])
    pop_x = np.array([[0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 5]], np.float32)
    pop_y = np.array([1, 1])
    seen = {}

    def fake_fit(self, xs, ys, s, seed):
        seen["x"], seen["s"] = xs, s
        self.scale_ = Standardizer(np.zeros(6), np.ones(6))
        width = 2 * self._outputs()
        self.net_ = lambda t: t[:, :width]

    monkeypatch.setattr(QuantileAttack, "_fit_regressor", fake_fit)
    target = BlackBoxTarget(CallableTarget(lambda b: b[:, 4:], 2, output="logits"))
    data = QueryData(x, y, pop_x, pop_y, seed=0)
    scores = QuantileAttack(loss=loss).fit().prepare(target, data).score(target, data)
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    # fitted on the target's hinge scores of the population (non-members) only
    np.testing.assert_array_equal(seen["x"], pop_x)
    np.testing.assert_allclose(seen["s"], [0 - 1, 5 - 0])
    assert target.queries == 4
