"""Empirical epsilon lower bounds (Clopper-Pearson) against the accountant."""

import math

import numpy as np
import pytest

from mialens.defenses.dp_audit import empirical_epsilon, strongest_epsilon
from mialens.dp.many_run import clopper_pearson_upper, epsilon_from_rates
from mialens.errors import DataError
from mialens.workflows.audit import run_audit
from mialens.workflows.config import validate_config


def test_clopper_pearson_zero_errors_is_exact():
    # P[0 errors | p] = (1 - p)^n = alpha  ->  p = 1 - alpha^(1/n)
    assert clopper_pearson_upper(0, 50, 0.05) == pytest.approx(1 - 0.05 ** (1 / 50))
    assert clopper_pearson_upper(50, 50, 0.05) == 1.0


def test_epsilon_bound_hand_values():
    # FPR 0.1, FNR 0.2, delta 0: max(log(0.9 / 0.2), log(0.8 / 0.1)) = log 8
    assert epsilon_from_rates(0.1, 0.2, 0.0) == pytest.approx(math.log(8))
    assert epsilon_from_rates(0.5, 0.5, 0.0) == 0.0
    assert epsilon_from_rates(0.0, 0.3, 0.0) == math.inf  # a perfect test certifies nothing finite


def test_separable_scores_give_a_large_bound_and_random_scores_none():
    rng = np.random.default_rng(0)
    members = np.stack([rng.permutation(np.arange(1000) < 500) for _ in range(4)])
    perfect = members + rng.normal(0, 0.01, members.shape)
    strong = empirical_epsilon(perfect, members, delta=1e-5)
    assert strong["mean"] > 3.0
    assert strong["max"] <= max(strong["per_target"])  # joint confidence is more conservative
    noise = empirical_epsilon(rng.normal(size=members.shape), members, delta=1e-5)
    assert noise["mean"] < 0.3


def test_needs_two_targets():
    with pytest.raises(DataError, match="two targets"):
        empirical_epsilon(np.zeros((1, 10)), (np.arange(10) < 5)[None], delta=1e-5)


def test_dp_sgd_empirical_bound_stays_below_the_accountant():
    config = validate_config(
        {
            "dataset": {"name": "digits"},
            "model": {"hidden": [64]},
            "train": {
                "epochs": 5,
                "batch_size": 32,
                "lr": 0.01,
                "dp": {"noise_multiplier": 0.8, "max_grad_norm": 1.0, "delta": 1e-5},
            },
            "audit": {
                "num_models": 4,
                "pool_size": 600,
                "bootstrap": 0,
                "attacks": ["loss", "lira_offline"],
            },
        }
    )
    result = run_audit(config)
    accountant = max(r["epsilon"] for r in result.training)
    assert 0 < accountant < 50
    for name in ("loss", "lira_offline"):
        bound = empirical_epsilon(result.scores[name], result.members, delta=1e-5)
        assert bound["max"] <= accountant, name


def test_strongest_epsilon_corrects_for_the_choice_of_attack():
    rng = np.random.default_rng(4)
    members = np.stack([rng.permutation(np.arange(400) < 200) for _ in range(4)])
    scores = {
        "a": members + rng.normal(0, 0.5, members.shape),
        "b": members + rng.normal(0, 0.8, members.shape),
        "c": rng.normal(size=members.shape),
    }
    got = strongest_epsilon(scores, members, delta=1e-5)
    expected = max(
        empirical_epsilon(s, members, delta=1e-5, confidence=1 - 0.05 / 3)["max"]
        for s in scores.values()
    )
    assert got == pytest.approx(expected)
    assert got > 0
