"""Mechanisms of exactly known privacy for the validity harness: exact privacy, games."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from mialens.dp.gaussian_dp import gdp_delta, gdp_epsilon
from mialens.dp.mechanisms import (
    BROKEN_NOISE_FACTOR,
    GaussianMechanism,
    IdealDiracDPSGD,
    LinearDPSGD,
    RandomisedResponse,
    gdp_mu,
    many_run_game,
    one_run_game,
    simulate_ideal_dirac,
    step_log_likelihood_ratio,
)
from mialens.errors import ConfigError


def test_randomised_response_true_epsilon_is_exact():
    rr = RandomisedResponse(math.log(3.0))
    assert rr.flip_probability == pytest.approx(0.25, abs=1e-15)
    assert rr.true_epsilon(0.0) == pytest.approx(math.log(3.0), abs=1e-12)
    # (eps', delta)-DP tightly at 1 - p - delta = e^eps' p: log((0.75 - 0.05) / 0.25).
    assert rr.true_epsilon(0.05) == pytest.approx(math.log(2.8), abs=1e-12)
    assert rr.true_epsilon(0.6) == 0.0  # 1 - p - delta < p: nothing left to distinguish
    for eps in (1.0, 2.0, 4.0):
        assert RandomisedResponse(eps).true_epsilon(0.0) == pytest.approx(eps, abs=1e-12)
        assert eps - 1e-4 < RandomisedResponse(eps).true_epsilon(1e-5) < eps


def test_gaussian_true_epsilon_is_that_of_its_mu():
    for eps in (1.0, 4.0, 8.0):
        mechanism = GaussianMechanism(eps, claim_delta=1e-5)
        assert gdp_delta(eps, mechanism.mu) == pytest.approx(1e-5, rel=1e-9)
        assert mechanism.true_epsilon(1e-5) == gdp_epsilon(mechanism.mu, 1e-5)
        assert mechanism.true_epsilon(1e-5) == pytest.approx(eps, abs=1e-9)
        assert mechanism.threshold == mechanism.mu / 2
    assert gdp_mu(1.0, 1e-5) < gdp_mu(4.0, 1e-5) < gdp_mu(8.0, 1e-5)


def test_broken_mechanisms_run_above_their_claim():
    for eps in (1.0, 2.0, 4.0):
        rr = RandomisedResponse(eps, noise_factor=BROKEN_NOISE_FACTOR)
        assert rr.name == "randomised_response_broken"
        assert rr.flip_probability == pytest.approx(0.1 / (1 + math.exp(eps)), rel=1e-12)
        assert rr.true_epsilon(1e-5) > eps + 2.0
        gauss = GaussianMechanism(eps, noise_factor=BROKEN_NOISE_FACTOR)
        assert gauss.mu == pytest.approx(10 * GaussianMechanism(eps).mu, rel=1e-12)
        assert gauss.true_epsilon(1e-5) > 3 * eps


def test_games_shapes_and_seeded_determinism():
    for mechanism in (RandomisedResponse(1.0), GaussianMechanism(2.0)):
        scores, included = one_run_game(mechanism, 37, 5, np.random.default_rng(3))
        assert scores.shape == included.shape == (5, 37)
        assert included.dtype == bool and scores.dtype == float
        again, bits = one_run_game(mechanism, 37, 5, np.random.default_rng(3))
        assert np.array_equal(scores, again) and np.array_equal(included, bits)
        other, _ = one_run_game(mechanism, 37, 5, np.random.default_rng(4))
        assert not np.array_equal(scores, other)
        in_scores, out_scores = many_run_game(mechanism, 7, 4, np.random.default_rng(0))
        assert in_scores.shape == (4, 3) and out_scores.shape == (4, 4)


def test_games_follow_their_distributions():
    rng = np.random.default_rng(11)
    rr = RandomisedResponse(1.0)
    scores, included = one_run_game(rr, 200_000, 1, rng)
    assert abs(included.mean() - 0.5) < 0.005
    assert set(np.unique(scores)) <= {0.0, 1.0}
    assert abs(np.mean(scores != included) - rr.flip_probability) < 0.005
    gauss = GaussianMechanism(4.0)
    in_scores, out_scores = many_run_game(gauss, 200_000, 1, rng)
    assert abs(in_scores.mean() - gauss.mu) < 0.01 and abs(out_scores.mean()) < 0.01
    assert abs(in_scores.std() - 1) < 0.01 and abs(out_scores.std() - 1) < 0.01


def test_bad_claims_are_refused():
    with pytest.raises(ConfigError, match="claimed epsilon"):
        RandomisedResponse(0.0)
    with pytest.raises(ConfigError, match="noise_factor"):
        GaussianMechanism(1.0, noise_factor=2.0)
    with pytest.raises(ConfigError, match="claim_delta"):
        GaussianMechanism(1.0, claim_delta=0.0)


def test_step_log_likelihood_ratio_by_hand():
    # x = 1/2 makes (2x - 1) = 0: log(1 - q + q) = 0; q = 1: the Gaussian ratio itself
    assert step_log_likelihood_ratio(np.array([0.5]), 0.3, 2.0)[0] == pytest.approx(0.0, abs=1e-15)
    assert step_log_likelihood_ratio(np.array([2.0]), 1.0, 1.0)[0] == pytest.approx(1.5)
    # the mixture's density ratio, from scipy's normal densities
    x, q, s = np.array([-0.7, 0.2, 1.9]), 0.1, 0.8
    ratio = ((1 - q) * norm.pdf(x, 0, s) + q * norm.pdf(x, 1, s)) / norm.pdf(x, 0, s)
    assert step_log_likelihood_ratio(x, q, s) == pytest.approx(np.log(ratio), rel=1e-12)


def test_ideal_dirac_scores_follow_their_laws():
    q, steps, sigma = 0.2, 30, 1.5
    final = IdealDiracDPSGD(q, steps, sigma, view="final")
    scores, included = one_run_game(final, 40_000, 1, np.random.default_rng(1))
    inside, outside = scores[0][included[0]], scores[0][~included[0]]
    assert abs(inside.mean() - q * steps) < 0.1 and abs(outside.mean()) < 0.1
    assert abs(outside.std() - sigma * math.sqrt(steps)) < 0.1
    assert abs(inside.var() - (steps * q * (1 - q) + steps * sigma**2)) < 2.0
    # every step seen: the log-likelihood ratio has mean -KL < 0 OUT and +KL > 0 IN
    scores, included = simulate_ideal_dirac(q, steps, sigma, 20_000, view="all_steps", seed=3)
    assert scores.shape == included.shape == (20_000,)
    assert scores[included].mean() > 0 > scores[~included].mean()
    again, _ = simulate_ideal_dirac(q, steps, sigma, 20_000, view="all_steps", seed=3)
    assert np.array_equal(scores, again)
    assert final.claimed_epsilon == final.true_epsilon(1e-5)
    broken = IdealDiracDPSGD(q, steps, sigma, noise_factor=BROKEN_NOISE_FACTOR)
    assert broken.name == "dpsgd_ideal_final_broken"
    assert broken.true_epsilon(1e-5) > 3 * broken.claimed_epsilon


def test_linear_dpsgd_canaries_move_their_own_coordinate():
    # no noise to speak of (sigma / 10 of 0.01): each included canary adds C = 1 to its
    # alignment at each step it is sampled, an excluded one adds nothing
    mechanism = LinearDPSGD(0.5, 20, 0.01, noise_factor=BROKEN_NOISE_FACTOR)
    included = np.random.default_rng(0).random((3, 12)) < 0.5
    scores = mechanism.scores(included, np.random.default_rng(4))
    assert np.all(np.abs(scores[~included]) < 0.01)
    assert np.all(scores[included] >= 1 - 0.01) and np.all(scores[included] <= 20.01)
    assert np.allclose(scores, np.round(scores), atol=0.01)  # whole numbers of steps
    with pytest.raises(ConfigError, match="view"):
        LinearDPSGD(0.5, 20, 1.0, view="last")
    with pytest.raises(ConfigError, match="sample rate"):
        LinearDPSGD(0.0, 20, 1.0)
