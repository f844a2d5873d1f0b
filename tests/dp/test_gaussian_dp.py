from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import norm

from mialens.dp.gaussian_dp import (
    estimate_gaussian_dp,
    estimate_gdp_from_steps,
    gdp_delta,
    gdp_epsilon,
    mu_from_rates,
)
from mialens.errors import ConfigError, DataError


def test_delta_at_epsilon_zero_is_total_variation():
    # eps = 0: delta = Phi(mu/2) - Phi(-mu/2) = 2 Phi(mu/2) - 1
    assert gdp_delta(0.0, 1.0) == pytest.approx(2 * norm.cdf(0.5) - 1, rel=1e-12)


@pytest.mark.parametrize("mu, eps", [(0.5, 0.3), (1.0, 1.0), (2.0, 3.0), (4.0, 8.0)])
def test_delta_is_the_hockey_stick_divergence_of_two_gaussians(mu, eps):
    # delta(eps) = integral of max(0, p_mu(x) - e^eps p_0(x)), p_s the N(s, 1) density
    def gap(x):
        return max(0.0, norm.pdf(x, loc=mu) - math.exp(eps) * norm.pdf(x))

    cut = eps / mu + mu / 2  # the gap is positive exactly above this point
    expected = quad(gap, cut, cut + 40, epsabs=1e-14, limit=200)[0]
    assert gdp_delta(eps, mu) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("mu, eps", [(0.5, 0.2), (1.0, 2.0), (3.0, 9.0)])
def test_epsilon_inverts_delta(mu, eps):
    assert gdp_epsilon(mu, gdp_delta(eps, mu)) == pytest.approx(eps, abs=1e-8)


def test_epsilon_is_zero_without_leakage():
    assert gdp_epsilon(0.0, 1e-5) == 0.0
    assert gdp_epsilon(-1.0, 1e-5) == 0.0
    assert gdp_epsilon(0.1, 0.5) == 0.0  # delta(0) = 2 Phi(0.05) - 1 < 0.5


def test_mu_from_rates_by_hand():
    assert mu_from_rates(norm.cdf(1.0), norm.cdf(-1.0)) == pytest.approx(2.0, rel=1e-12)
    assert mu_from_rates(0.3, 0.3) == 0.0


def test_estimate_by_hand_with_shuffled_scores():
    gen = np.random.default_rng(5)
    in_scores = gen.permutation(np.r_[np.full(8, 1.0), np.full(2, -1.0)])  # TPR = 0.8
    out_scores = gen.permutation(np.r_[np.full(2, 1.0), np.full(8, -1.0)])  # FPR = 0.2
    result = estimate_gaussian_dp(in_scores, out_scores, threshold=0.0, delta=1e-5)
    mu = 2 * norm.ppf(0.8)
    assert result.epsilon_lower == pytest.approx(gdp_epsilon(mu, 1e-5), rel=1e-12)
    assert gdp_delta(result.epsilon_lower, mu) == pytest.approx(1e-5, rel=1e-6)
    assert (result.kind, result.beta, result.ceiling, result.correct) == (
        "estimate",
        None,
        None,
        16,
    )
    doc = result.to_json()
    assert doc["epsilon_estimate"] == result.epsilon_lower and "epsilon_lower" not in doc


def test_estimate_on_the_gaussian_mechanism():
    # IN ~ N(mu, 1), OUT ~ N(0, 1) is exactly mu-GDP; the threshold mu/2 is fixed in advance
    mu, delta = 1.5, 1e-5
    gen = np.random.default_rng(2024)
    estimates = [
        estimate_gaussian_dp(
            gen.normal(mu, 1, 20_000), gen.normal(0, 1, 20_000), threshold=mu / 2, delta=delta
        ).epsilon_lower
        for _ in range(20)
    ]
    assert np.median(estimates) == pytest.approx(gdp_epsilon(mu, delta), rel=0.05)


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"delta": 0.0}, ConfigError, "delta must lie in"),
        ({"threshold": 5.0}, DataError, "TPR is 0.0"),
        ({"out_scores": np.array([-1.0, -1.0, -2.0])}, DataError, "FPR is 0.0"),
        ({"in_scores": np.array([np.nan, 1.0])}, DataError, "NaN"),
    ],
)
def test_bad_input_is_refused(kwargs, error, text):
    args = {
        "in_scores": np.array([1.0, 1.0, -1.0]),
        "out_scores": np.array([-1.0, -1.0, 1.0]),
        "threshold": 0.0,
        "delta": 1e-5,
    } | kwargs
    with pytest.raises(error, match=text):
        estimate_gaussian_dp(**args)


def test_steps_estimate_by_hand():
    # IN 1, 3 (mean 2), OUT -1, 1 (mean 0); pooled variance (2 + 2) / 2 = 2; 8 steps:
    # mu = sqrt(8) * 2 / sqrt(2) = 4
    result = estimate_gdp_from_steps(
        np.array([3.0, 1.0]), np.array([1.0, -1.0]), steps=8, delta=1e-5
    )
    assert result.epsilon_lower == gdp_epsilon(4.0, 1e-5)
    assert (result.kind, result.m, result.correct, result.beta) == ("estimate", 4, 3, None)
    assert result.method == "gaussian_dp_steps_nasr2023"
    with pytest.raises(DataError, match="no spread"):
        estimate_gdp_from_steps(np.ones(3), np.ones(3), steps=1, delta=1e-5)
    with pytest.raises(ConfigError, match="steps"):
        estimate_gdp_from_steps(np.ones(3), np.zeros(3), steps=0, delta=1e-5)


def test_steps_estimate_on_full_batch_dpsgd():
    # full-batch DP-SGD with a Dirac canary: each step N(1, sigma^2) IN, N(0, sigma^2) OUT,
    # exactly (sqrt(T) / sigma)-GDP; one run IN and one OUT give T observations each
    steps, sigma = 400, 4.0
    truth = gdp_epsilon(math.sqrt(steps) / sigma, 1e-5)
    gen = np.random.default_rng(8)
    estimates = [
        estimate_gdp_from_steps(
            1 + sigma * gen.standard_normal(steps), sigma * gen.standard_normal(steps),
            steps=steps, delta=1e-5,
        ).epsilon_lower
        for _ in range(50)
    ]  # fmt: skip
    assert abs(np.median(estimates) / truth - 1) < 0.2
