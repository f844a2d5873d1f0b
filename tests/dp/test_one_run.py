from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
from scipy.special import expit, logit
from scipy.stats import binom

from mialens.dp.one_run import audit_one_run, ceiling, epsilon_lower, guess, p_value
from mialens.errors import ConfigError, DataError


def test_all_correct_pure_dp_is_the_binomial_tail():
    # P[Binomial(10, q) >= 10] = q^10 with q = e^eps / (1 + e^eps)
    for eps in (0.0, 0.5, 1.0, 3.0):
        q = np.exp(eps) / (1 + np.exp(eps))
        assert p_value(10, 10, 10, eps, 0.0) == pytest.approx(q**10, rel=1e-12)


def test_delta_term_by_hand():
    # m=10, r=4, v=3, eps=0 (q=1/2): f(3) = (4 + 1)/16; the ratios (f(3-i) - f(3))/i are
    # P[B=2]/1 = 6/16, P[1<=B<=2]/2 = 5/16, P[0<=B<=2]/3 = 11/48: max 6/16.
    # 2 m delta = 0.2 at delta = 0.01, so p = 5/16 + 0.2 * 6/16 = 0.3875.
    assert p_value(10, 4, 3, 0.0, 0.01) == pytest.approx(0.3875, rel=1e-12)
    # the same at eps = 1 with scipy's binomial for the pieces
    q = expit(1.0)
    ratios = [(binom.sf(2 - i, 4, q) - binom.sf(2, 4, q)) / i for i in (1, 2, 3)]
    expected = binom.sf(2, 4, q) + 0.2 * max(ratios)
    assert p_value(10, 4, 3, 1.0, 0.01) == pytest.approx(expected, rel=1e-12)


def test_no_correct_guess_has_p_value_one():
    assert p_value(5, 3, 0, 2.0, 0.01) == 1.0


@pytest.mark.parametrize(
    "m, guesses, correct, delta",
    [(10, 10, 10, 0.0), (10, 4, 3, 0.05), (1000, 200, 150, 1e-5), (50, 30, 20, 0.01)],
)
def test_p_value_never_decreases_with_epsilon(m, guesses, correct, delta):
    # 2 m delta = 1 in the second case: the edge of the range where monotonicity is proved
    values = [p_value(m, guesses, correct, eps, delta) for eps in np.linspace(0, 8, 400)]
    assert np.all(np.diff(values) >= -1e-15)


def test_epsilon_lower_pure_dp_closed_form():
    # all 10 correct, delta = 0: q^10 = beta at q = beta^(1/10), eps* = logit(q)
    exact = logit(0.05**0.1)
    found = epsilon_lower(10, 10, 10, beta=0.05, delta=0.0)
    assert exact - 1e-6 <= found <= exact
    assert ceiling(10, 10, beta=0.05, delta=0.0) == found


def test_epsilon_lower_is_the_edge_of_the_rejected_range():
    found = epsilon_lower(1000, 200, 170, beta=0.05, delta=1e-5)
    assert found > 0
    assert p_value(1000, 200, 170, found, 1e-5) < 0.05
    assert p_value(1000, 200, 170, found + 2e-6, 1e-5) >= 0.05


def test_epsilon_lower_is_zero_at_chance():
    assert epsilon_lower(1000, 100, 50, beta=0.05, delta=1e-5) == 0.0
    assert epsilon_lower(1000, 100, 30, beta=0.05, delta=0.0) == 0.0


def test_ceiling_grows_with_guesses_and_shrinks_with_delta():
    assert ceiling(1000, 10, beta=0.05, delta=0.0) < ceiling(1000, 100, beta=0.05, delta=0.0)
    assert ceiling(1000, 100, beta=0.05, delta=1e-4) < ceiling(1000, 100, beta=0.05, delta=0.0)


def test_guess_by_hand_with_shuffled_ids():
    scores = np.array([0.9, -1.0, 0.3, 2.0, -0.5, 0.1])
    included = np.array([True, False, True, False, True, False])
    # top 2: scores 2.0 (OUT, wrong) and 0.9 (IN, right); bottom 2: -1.0 (OUT, right), -0.5 (IN)
    assert guess(scores, included, k_plus=2, k_minus=2) == (4, 2)
    assert guess(scores, included, k_plus=1, k_minus=0) == (1, 0)
    assert guess(scores, included, k_plus=0, k_minus=1) == (1, 1)


def test_ties_are_broken_without_the_inclusion_bits():
    # all scores tied: the same canaries are guessed whatever the bits, so the counts of a
    # labelling and of its complement add up to the number of guesses
    included = np.random.default_rng(3).random(40) < 0.5
    scores = np.zeros(40)
    _, right = guess(scores, included, k_plus=7, k_minus=5, seed=11)
    _, flipped = guess(scores, ~included, k_plus=7, k_minus=5, seed=11)
    assert right + flipped == 12


def test_audit_one_run_result_and_json():
    scores = np.array([0.9, -1.0, 0.3, 2.0, -0.5, 0.1])
    included = np.array([True, False, True, False, True, False])
    result = audit_one_run(scores, included, k_plus=2, k_minus=2, delta=0.0)
    assert (result.guesses, result.correct, result.m) == (4, 2, 6)
    assert result.epsilon_lower == 0.0
    assert result.ceiling == pytest.approx(ceiling(6, 4, beta=0.05, delta=0.0))
    doc = json.loads(json.dumps(result.to_json()))
    assert doc["kind"] == "bound" and doc["epsilon_lower"] == 0.0 and doc["beta"] == 0.05


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"beta": 0.0}, ConfigError, "beta must lie in"),
        ({"beta": 1.0}, ConfigError, "beta must lie in"),
        ({"delta": -0.1}, ConfigError, "delta must lie in"),
        ({"delta": 1.0}, ConfigError, "delta must lie in"),
        ({"delta": 0.2}, ConfigError, "2 \\* m \\* delta"),
        ({"k_plus": 4, "k_minus": 3}, ConfigError, "k_plus \\+ k_minus <= m"),
        ({"k_plus": 0, "k_minus": 0}, ConfigError, "1 <= k_plus"),
        ({"included": np.array([1, 0, 1, 0, 1, 0])}, DataError, "must be boolean"),
        ({"scores": np.array([0.1, np.nan, 0, 0, 0, 0])}, DataError, "NaN"),
    ],
)
def test_bad_input_is_refused(kwargs, error, text):
    args = {
        "scores": np.arange(6.0),
        "included": np.array([True, False] * 3),
        "k_plus": 2,
        "k_minus": 2,
        "delta": 0.0,
        "beta": 0.05,
    } | kwargs
    with pytest.raises(error, match=text):
        audit_one_run(**args)


def _randomised_response(eps: float, reps: int, m: int, seed: int):
    """Each canary's score is its inclusion bit, flipped with probability 1 / (1 + e^eps):
    exactly eps-DP in each canary."""
    gen = np.random.default_rng(seed)
    included = gen.random((reps, m)) < 0.5
    flips = gen.random((reps, m)) < 1 / (1 + np.exp(eps))
    return (included ^ flips).astype(float), included


def _lower_bounds(eps: float, *, delta: float, seed: int, reps: int = 300, m: int = 1000):
    bound = cache(lambda correct: epsilon_lower(m, 200, correct, beta=0.05, delta=delta))
    scores, included = _randomised_response(eps, reps, m, seed)
    counts = [
        guess(s, b, k_plus=100, k_minus=100, seed=r)[1]
        for r, (s, b) in enumerate(zip(scores, included, strict=True))
    ]
    return np.array([bound(c) for c in counts])


@pytest.mark.parametrize("eps, seed", [(1.0, 101), (2.0, 202)])
def test_coverage_on_randomised_response(eps, seed):
    for delta in (0.0, 1e-5):
        bounds = _lower_bounds(eps, delta=delta, seed=seed)
        assert np.mean(bounds <= eps) >= 0.925


def test_broken_mechanism_is_caught():
    # claimed eps = 1, true eps = 4
    bounds = _lower_bounds(4.0, delta=1e-5, seed=303)
    assert np.mean(bounds > 1.0) >= 0.90
