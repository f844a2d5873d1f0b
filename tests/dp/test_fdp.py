"""The one-run f-DP audit (Mahloujifar, Melis & Chaudhuri 2024): curves, test, bounds."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from mialens.dp.fdp import (
    EpsDeltaCurve,
    GaussianCurve,
    audit_one_run_fdp,
    epsilon_lower,
    max_plausible_correct,
    rejects,
)
from mialens.dp.gaussian_dp import gdp_delta, gdp_epsilon
from mialens.dp.one_run import audit_one_run
from mialens.errors import ConfigError, DataError


def _phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def _logit(q: float) -> float:
    return math.log(q / (1 - q))


def test_gaussian_curve_exact_values():
    curve = GaussianCurve(1.0)
    # f(1/2) = Phi(0 - 1); f(Phi(-1)) = Phi(Phi^-1(Phi(1)) - 1) = Phi(0) = 1/2.
    assert curve(0.5) == pytest.approx(_phi(-1.0), abs=1e-15)
    assert curve(_phi(-1.0)) == pytest.approx(0.5, abs=1e-15)
    assert curve(np.array([0.0, 1.0])) == pytest.approx([1.0, 0.0], abs=1e-15)
    assert GaussianCurve(0.0)(np.array([0.2, 0.7])) == pytest.approx([0.8, 0.3], abs=1e-15)
    # blow_up_inverse(y) is the x with 1 - f(x) = y: here 1 - f(Phi(-1)) = 1/2.
    assert curve.blow_up_inverse(0.5) == pytest.approx(_phi(-1.0), abs=1e-15)


def test_eps_delta_curve_exact_values():
    curve = EpsDeltaCurve(math.log(2.0), 0.1)
    # max(0, 0.9 - 2x, (0.9 - x) / 2): the two pieces cross at x = 0.3 = f(0.3).
    xs = np.array([0.0, 0.1, 0.3, 0.5, 0.9, 1.0])
    assert curve(xs) == pytest.approx([0.9, 0.7, 0.3, 0.2, 0.0, 0.0], abs=1e-15)
    for y in (0.1, 0.3, 0.7, 0.95, 1.0):  # 1 - f(x) reaches y first at blow_up_inverse(y)
        assert 1 - curve(curve.blow_up_inverse(y)) == pytest.approx(y, abs=1e-12)
    assert curve.blow_up_inverse(0.05) == 0.0  # 1 - f(0) = delta already exceeds 0.05
    assert curve.blow_up_inverse(0.3) == pytest.approx(0.1, abs=1e-15)  # (0.3 - 0.1) / 2


def test_gaussian_delta_exact_values_and_inverse_from_below():
    assert gdp_delta(1.0, 1.0) == pytest.approx(_phi(-0.5) - math.e * _phi(-1.5), abs=1e-14)
    assert gdp_delta(0.0, 2.0) == pytest.approx(2 * _phi(1.0) - 1, abs=1e-14)
    for mu in (0.5, 1.0, 3.0):
        eps = gdp_epsilon(mu, 1e-5)
        assert gdp_delta(eps, mu) == pytest.approx(1e-5, rel=1e-8)
        assert gdp_delta(eps, mu) >= 1e-5  # the lower end: never above the true eps
    assert gdp_epsilon(0.0, 1e-5) == 0.0


def test_recursion_by_hand_two_guesses():
    # m = 4, two right guesses, (eps, 0): r = beta/2, h = 0; i = 1: h = e^-eps beta/2,
    # r = beta/2 (1 + e^-eps); i = 0: h = e^-eps r. r + h = beta/2 (1 + e^-eps)^2 > 2/4
    # exactly when beta > q^2 with q = 1 / (1 + e^-eps): the binomial tail of 2 right.
    beta = 0.3
    eps_star = _logit(math.sqrt(beta))
    assert rejects(EpsDeltaCurve(eps_star - 1e-9, 0.0), 4, 2, 2, beta)
    assert not rejects(EpsDeltaCurve(eps_star + 1e-9, 0.0), 4, 2, 2, beta)
    # one right of two: r = h = beta/2 and h never moves, so r + h = beta/2 < 1/2.
    assert not rejects(EpsDeltaCurve(0.0, 0.0), 4, 2, 1, beta)


@pytest.mark.parametrize("m,guesses", [(5, 5), (20, 5), (100, 10), (50, 50)])
def test_all_correct_matches_binomial_tail(m, guesses):
    # Under eps-DP, r all-correct guesses have probability at most q^r, q = e^eps/(1+e^eps)
    # (Steinke et al. 2023, delta = 0), reached by randomised response: the largest
    # rejected eps is logit(beta^(1/r)), and no valid bound can exceed it.
    beta = 0.05
    expected = _logit(beta ** (1 / guesses))
    result = epsilon_lower(m, guesses, guesses, beta=beta, delta=0.0, family="eps_delta")
    assert result.epsilon_lower == pytest.approx(expected, abs=1e-9)
    assert result.ceiling == result.epsilon_lower


def test_rejected_parameters_form_a_prefix_and_counts_a_suffix():
    grid = np.linspace(0.0, 6.0, 121)
    for m, guesses, correct in [(1000, 200, 170), (1000, 200, 195), (50, 20, 18), (10, 10, 9)]:
        for make in (GaussianCurve, lambda e: EpsDeltaCurve(e, 1e-5)):
            rejected = [rejects(make(p), m, guesses, correct, 0.05) for p in grid]
            assert rejected == sorted(rejected, reverse=True)  # True ... True, False ...
    curve = GaussianCurve(1.0)
    by_count = [rejects(curve, 1000, 200, v, 0.05) for v in range(201)]
    assert by_count == sorted(by_count)  # False ... False, True ...
    assert max_plausible_correct(curve, 1000, 200, 0.05) == by_count.index(True) - 1


def test_bound_is_monotone_in_correct_and_beta():
    for family in ("gaussian", "eps_delta"):
        bounds = [
            epsilon_lower(1000, 200, v, family=family).epsilon_lower for v in range(150, 201, 5)
        ]
        assert bounds == sorted(bounds)
        assert bounds[-1] == epsilon_lower(1000, 200, 150, family=family).ceiling
        strict = epsilon_lower(1000, 200, 190, beta=0.01, family=family).epsilon_lower
        assert strict < epsilon_lower(1000, 200, 190, beta=0.05, family=family).epsilon_lower


def test_result_json():
    doc = epsilon_lower(1000, 200, 190, beta=0.05, delta=1e-5).to_json()
    assert doc["method"] == "one_run_fdp_gaussian" and doc["kind"] == "bound"
    assert (doc["m"], doc["guesses"], doc["correct"]) == (1000, 200, 190)
    assert 0 < doc["epsilon_lower"] <= doc["ceiling"]


def test_audit_from_scores_plays_the_one_run_game():
    # IN for 2.0 and 1.1 (both in: 2 right); OUT for -1.0 (out) and -0.2 (in): 1 right.
    scores = np.array([0.3, -1.0, 2.0, 0.5, -0.2, 1.1])
    included = np.array([1, 0, 1, 0, 1, 1], bool)
    result = audit_one_run_fdp(scores, included, k_plus=2, k_minus=2, delta=1e-5)
    assert (result.m, result.guesses, result.correct) == (6, 4, 3)
    assert result.epsilon_lower == epsilon_lower(6, 4, 3, delta=1e-5).epsilon_lower
    plain = audit_one_run(scores, included, k_plus=2, k_minus=2, delta=1e-5)
    assert (plain.guesses, plain.correct) == (result.guesses, result.correct)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"beta": 0.0}, ConfigError, "beta"),
        ({"beta": 1.0}, ConfigError, "beta"),
        ({"delta": 0.0}, ConfigError, "delta"),
        ({"delta": 1.0, "family": "eps_delta"}, ConfigError, "delta"),
        ({"family": "laplace"}, ConfigError, "family"),
        ({"guesses": 1001}, ConfigError, "guesses"),
        ({"correct": 201}, DataError, "correct"),
    ],
)
def test_bad_settings(kwargs, error, match):
    args = {"m": 1000, "guesses": 200, "correct": 150} | kwargs
    with pytest.raises(error, match=match):
        epsilon_lower(**args)


def _one_run_games(outputs: np.ndarray, included: np.ndarray, k: int) -> np.ndarray:
    """Right guesses per repetition (rows): IN for the k highest, OUT for the k lowest."""
    order = np.argsort(outputs, axis=1, kind="stable")
    low = np.take_along_axis(included, order[:, :k], axis=1)
    high = np.take_along_axis(included, order[:, -k:], axis=1)
    return (low == 0).sum(axis=1) + (high == 1).sum(axis=1)


M, K, REPS, BETA, DELTA = 1000, 100, 250, 0.05, 1e-5


def _bounds(correct: np.ndarray, family: str, delta: float) -> np.ndarray:
    """epsilon_lower per repetition; it depends on the data only through the count."""
    bound = functools.lru_cache(maxsize=None)(
        lambda v: epsilon_lower(M, 2 * K, v, beta=BETA, delta=delta, family=family)
    )
    return np.array([bound(int(v)).epsilon_lower for v in correct])


@pytest.mark.parametrize("family", ["gaussian", "eps_delta"])
def test_coverage_on_the_gaussian_mechanism(family):
    # Each canary's score is its inclusion bit * mu + N(0, 1): mu-GDP in each bit, hence
    # (eps(mu, delta), delta)-DP. mu = 1 puts the true eps (4.38) below the ceiling (7.26).
    mu = 1.0
    gen = np.random.default_rng(20241029)
    included = gen.integers(0, 2, size=(REPS, M))
    correct = _one_run_games(mu * included + gen.normal(size=(REPS, M)), included, K)
    bounds = _bounds(correct, family, DELTA)
    assert np.mean(bounds <= gdp_epsilon(mu, DELTA)) >= 0.925  # measured: 1.0
    assert np.median(bounds) > 0.5  # not vacuous


def test_coverage_on_randomised_response():
    # Each canary's output is its bit flipped with probability 1 / (1 + e^eps): eps-DP.
    # The score breaks ties between equal outputs at random, independently of the bits.
    eps = 1.0
    gen = np.random.default_rng(20230514)
    included = gen.integers(0, 2, size=(REPS, M))
    kept = gen.random((REPS, M)) < 1 / (1 + math.exp(-eps))
    outputs = np.where(kept, included, 1 - included) + 1e-3 * gen.random((REPS, M))
    correct = _one_run_games(outputs, included, K)
    bounds = _bounds(correct, "eps_delta", 0.0)
    assert np.mean(bounds <= eps) >= 0.925  # measured: 0.964
    assert np.median(bounds) > 0.3
