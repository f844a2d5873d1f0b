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
    assert QuantileAttack().references == "none"
