"""The validity harness: coverage, detection and ceilings of the DP bounds on known mechanisms."""

from __future__ import annotations

import numpy as np
import pytest

from mialens.dp import fdp, one_run
from mialens.dp.coverage import (
    METHODS,
    CoverageReport,
    coverage,
    one_run_bound,
    one_run_counts,
    pilot_k,
)
from mialens.dp.mechanisms import BROKEN_NOISE_FACTOR, GaussianMechanism, RandomisedResponse
from mialens.errors import ConfigError


def _methods(mechanism):
    return [m for m in METHODS if mechanism.gaussian_dp or m != "one_run_fdp_gaussian"]


def test_report_summaries_exact():
    report = CoverageReport(
        mechanism="toy", method="one_run", claimed_epsilon=1.0, true_epsilon=2.0, m=10, k=2,
        beta=0.05, delta=0.0, epsilon_lower=np.array([0.5, 3.0, 1.5, 2.0]), ceiling=4.0,
    )  # fmt: skip
    assert report.coverage == 0.75  # 0.5, 1.5, 2.0 <= 2
    assert report.detection_rate == 0.75  # 3.0, 1.5, 2.0 > 1
    assert report.median_epsilon_lower == 1.75
    assert report.to_json()["repetitions"] == 4 and report.to_json()["ceiling_exceeds_claim"]


def test_bounds_are_those_of_the_library():
    assert one_run_bound("one_run", 500, 60, 55, 0.05, 1e-5) == one_run.epsilon_lower(
        500, 60, 55, beta=0.05, delta=1e-5
    )
    direct = fdp.epsilon_lower(500, 60, 55, beta=0.05, delta=1e-5, family="eps_delta")
    assert one_run_bound("one_run_fdp_eps_delta", 500, 60, 55, 0.05, 1e-5) == (direct.epsilon_lower)


def test_counts_are_seeded_and_guess_2k():
    rr = RandomisedResponse(2.0)
    guesses, correct = one_run_counts(rr, m=200, k=30, repetitions=6, seed=5)
    assert np.all(guesses == 60) and np.all(correct <= 60)
    again = one_run_counts(rr, m=200, k=30, repetitions=6, seed=5)
    assert np.array_equal(correct, again[1])


@pytest.mark.parametrize(
    "mechanism, k", [(RandomisedResponse(2.0), 250), (GaussianMechanism(2.0), 50)]
)
def test_seeded_coverage_of_every_method(mechanism, k):
    for method in _methods(mechanism):
        report = coverage(mechanism, method, m=500, k=k, repetitions=100, seed=1)
        assert report.coverage >= 0.9, method  # valid at beta = 0.05 (seeded)
        assert report.median_epsilon_lower > 0.05, method  # and not vacuous
        assert report.ceiling > report.median_epsilon_lower


def test_broken_mechanism_is_caught():
    mechanism = GaussianMechanism(1.0, noise_factor=BROKEN_NOISE_FACTOR)
    for method in METHODS:
        report = coverage(mechanism, method, m=500, k=50, repetitions=100, seed=2)
        assert report.ceiling > 1.0
        assert report.detection_rate >= 0.9, method
        assert report.coverage >= 0.9, method


def test_same_seed_same_bounds_and_pilot_is_a_candidate():
    mechanism = GaussianMechanism(4.0)
    first = coverage(mechanism, "one_run", m=300, k=20, repetitions=20, seed=9)
    second = coverage(mechanism, "one_run", m=300, k=20, repetitions=20, seed=9)
    assert np.array_equal(first.epsilon_lower, second.epsilon_lower)
    # randomised response is equally accurate on every guess: guessing all is best
    rr = RandomisedResponse(1.0)
    assert pilot_k(rr, m=300, candidates=(15, 75, 150), repetitions=10, seed=99) == 150


def test_invalid_settings_are_refused():
    with pytest.raises(ConfigError, match="Gaussian-DP"):
        coverage(RandomisedResponse(1.0), "one_run_fdp_gaussian", m=100, k=10, repetitions=2)
    with pytest.raises(ConfigError, match="unknown method"):
        coverage(RandomisedResponse(1.0), "lira", m=100, k=10, repetitions=2)
    with pytest.raises(ConfigError, match="needs k"):
        coverage(GaussianMechanism(1.0), "one_run", m=100, k=None, repetitions=2)
