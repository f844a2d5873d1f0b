from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta as beta_dist

from mialens.dp.many_run import audit_many_runs, clopper_pearson_upper, epsilon_from_rates
from mialens.errors import ConfigError, DataError


def test_perfect_separation_by_hand():
    # 10 IN runs, 10 OUT runs, no error: each upper limit solves (1 - p)^10 = 0.025, and
    # eps = log((1 - p) / p); the same is the ceiling
    limit = 1 - 0.025**0.1
    result = audit_many_runs(np.arange(10.0) + 5, np.arange(10.0) - 20, threshold=0.0, delta=0.0)
    assert result.epsilon_lower == pytest.approx(math.log((1 - limit) / limit), rel=1e-9)
    assert result.ceiling == pytest.approx(result.epsilon_lower, rel=1e-12)
    assert (result.m, result.guesses, result.correct) == (20, 20, 20)


def test_errors_by_hand_with_shuffled_runs():
    gen = np.random.default_rng(7)
    in_scores = gen.permutation(np.r_[np.full(3, -1.0), np.full(7, 2.0)])  # 3 false negatives
    out_scores = gen.permutation(np.r_[np.full(1, 3.0), np.full(19, -2.0)])  # 1 false positive
    delta = 1e-3
    fnr_hi = beta_dist.ppf(0.975, 3 + 1, 10 - 3)  # Clopper-Pearson upper, level 0.05 / 2
    fpr_hi = beta_dist.ppf(0.975, 1 + 1, 20 - 1)
    expected = max(
        0.0, math.log((1 - delta - fpr_hi) / fnr_hi), math.log((1 - delta - fnr_hi) / fpr_hi)
    )
    result = audit_many_runs(in_scores, out_scores, threshold=0.5, delta=delta)
    assert result.epsilon_lower == pytest.approx(expected, rel=1e-9)
    assert result.correct == 26
    assert result.epsilon_lower < result.ceiling


def test_clopper_pearson_upper_closed_form():
    assert clopper_pearson_upper(0, 10, 0.025) == pytest.approx(1 - 0.025**0.1, rel=1e-9)
    assert clopper_pearson_upper(10, 10, 0.025) == 1.0


def test_useless_threshold_gives_zero():
    # a threshold above every score: FPR = 0, FNR = 1, nothing is learnt
    assert audit_many_runs(np.zeros(50), np.zeros(50), threshold=1.0, delta=0.0).epsilon_lower == 0
    assert epsilon_from_rates(0.5, 0.5, 0.0) == 0.0


def test_result_json():
    doc = audit_many_runs(np.ones(5), np.zeros(5), threshold=0.5, delta=1e-5).to_json()
    assert doc["method"] == "many_run_clopper_pearson" and doc["kind"] == "bound"
    assert doc["epsilon_lower"] == doc["ceiling"]


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"beta": 1.5}, ConfigError, "beta must lie in"),
        ({"delta": 1.0}, ConfigError, "delta must lie in"),
        ({"in_scores": np.array([])}, DataError, "non-empty"),
        ({"out_scores": np.array([0.0, np.nan])}, DataError, "NaN"),
        ({"threshold": float("nan")}, DataError, "threshold is NaN"),
    ],
)
def test_bad_input_is_refused(kwargs, error, text):
    args = {
        "in_scores": np.ones(4),
        "out_scores": np.zeros(4),
        "threshold": 0.5,
        "delta": 0.0,
        "beta": 0.05,
    } | kwargs
    with pytest.raises(error, match=text):
        audit_many_runs(**args)


def _randomised_response_bounds(eps: float, seed: int, reps: int = 300, runs: int = 500):
    """Each run outputs the canary's inclusion bit flipped with probability 1 / (1 + e^eps)
    (exactly eps-DP); threshold 0.5, fixed in advance."""
    gen = np.random.default_rng(seed)
    flip = 1 / (1 + np.exp(eps))
    in_scores = (gen.random((reps, runs)) >= flip).astype(float)
    out_scores = (gen.random((reps, runs)) < flip).astype(float)
    return np.array(
        [
            audit_many_runs(i, o, threshold=0.5, delta=1e-5).epsilon_lower
            for i, o in zip(in_scores, out_scores, strict=True)
        ]
    )


@pytest.mark.parametrize("eps, seed", [(1.0, 11), (2.0, 22)])
def test_coverage_on_randomised_response(eps, seed):
    assert np.mean(_randomised_response_bounds(eps, seed) <= eps) >= 0.925


def test_broken_mechanism_is_caught():
    assert np.mean(_randomised_response_bounds(4.0, 33) > 1.0) >= 0.90
