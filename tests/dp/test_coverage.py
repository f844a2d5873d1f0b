"""The validity harness: coverage, detection and ceilings of the DP bounds on known mechanisms."""

from __future__ import annotations

import numpy as np
import pytest

from mialens.dp import fdp, one_run
from mialens.dp.coverage import (
    CoverageReport,
    coverage,
    gdp_estimates,
    ideal_bound,
    methods_for,
    one_run_bound,
    one_run_counts,
    pilot_k,
)
from mialens.dp.mechanisms import (
    BROKEN_NOISE_FACTOR,
    GaussianMechanism,
    LinearDPSGD,
    RandomisedResponse,
    simulate_ideal_dirac,
)
from mialens.errors import ConfigError


def _methods(mechanism):
    return methods_for(mechanism)


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
    for method in methods_for(mechanism):
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


def test_dpsgd_methods_are_refused_off_dpsgd_and_listed_on_it():
    with pytest.raises(ConfigError, match="not DP-SGD"):
        coverage(GaussianMechanism(1.0), "one_run_fdp_dpsgd", m=100, k=10, repetitions=2)
    mechanism = LinearDPSGD(0.1, 10, 1.0)
    assert methods_for(mechanism) == [
        "one_run", "one_run_fdp_eps_delta", "one_run_fdp_dpsgd", "many_run"
    ]  # fmt: skip
    assert "one_run_fdp_dpsgd" not in methods_for(GaussianMechanism(1.0))


def test_seeded_coverage_and_detection_on_tiny_dpsgd():
    # real DP-SGD of a logistic regression, q = 0.2, 20 steps, sigma = 2.34 (eps = 1.99)
    for factor, view in ((1.0, "final"), (BROKEN_NOISE_FACTOR, "all_steps")):
        mechanism = LinearDPSGD(0.2, 20, 2.34375, view=view, noise_factor=factor)
        for method in ("one_run", "one_run_fdp_dpsgd"):
            report = coverage(mechanism, method, m=200, k=50, repetitions=100, seed=5)
            assert report.coverage >= 0.9, (method, view)
            if factor != 1.0:  # broken: caught (the ceilings exceed the claim)
                assert report.ceiling > mechanism.claimed_epsilon
                assert report.detection_rate >= 0.9, method


def test_ideal_bound_is_the_median_of_seeded_games():
    q, steps, sigma, m, k = 0.5, 20, 1.0, 100, 20
    for view in ("final", "all_steps"):
        expected = np.median(
            [
                one_run.audit_one_run(
                    *simulate_ideal_dirac(q, steps, sigma, m, view=view, seed=seed),
                    k_plus=k, k_minus=k, delta=1e-5,
                ).epsilon_lower
                for seed in (3, 4, 5)
            ]
        )  # fmt: skip
        found = ideal_bound(q, steps, sigma, m, view=view, method="one_run", k=k, seeds=(3, 4, 5))
        assert found == expected > 0
    with pytest.raises(ConfigError, match="one-run method"):
        ideal_bound(q, steps, sigma, m, view="final", method="many_run", k=k)
    with pytest.raises(ConfigError, match="Gaussian-DP"):
        ideal_bound(q, steps, sigma, m, view="final", method="one_run_fdp_gaussian", k=k)


def test_gdp_estimates_use_the_games_of_the_bounds():
    mechanism = GaussianMechanism(4.0)
    estimates = gdp_estimates(mechanism, m=2000, repetitions=20, seed=7)
    assert estimates.shape == (20,)
    assert abs(np.median(estimates) / 4.0 - 1) < 0.2  # measured: 0.99


def test_eps_delta_curve_falls_below_steinke_even_at_delta_zero():
    # Issue 14's "f-DP >= Steinke in every cell" holds for the Gaussian curve, not for the
    # (eps, delta) curve: with delta = 0, Steinke's bound is the exact binomial tail of
    # randomised response (tight), while the f-DP recursion on the kinked eps-DP curve is
    # an upper bound on that tail, looser when some guesses are wrong; equal when none is.
    for m, guesses, correct in [(1000, 200, 185), (100, 20, 15)]:
        steinke = one_run.epsilon_lower(m, guesses, correct, beta=0.05, delta=0.0)
        curve = fdp.epsilon_lower(m, guesses, correct, delta=0.0, family="eps_delta")
        assert curve.epsilon_lower < steinke - 5e-3
    steinke = one_run.epsilon_lower(20, 20, 20, beta=0.05, delta=0.0)
    curve = fdp.epsilon_lower(20, 20, 20, delta=0.0, family="eps_delta").epsilon_lower
    assert abs(curve - steinke) < 1e-5
