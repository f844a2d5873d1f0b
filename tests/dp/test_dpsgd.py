"""The accountant's f-DP curve of DP-SGD and its one-run bound (mialens.dp.dpsgd)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

from mialens.dp import fdp
from mialens.dp.dpsgd import (
    AccountantCurve,
    _least_rejected_noise,
    accountant_epsilon,
    audit_one_run_dpsgd,
    epsilon_lower_dpsgd,
    profile_delta,
    rdp,
)
from mialens.errors import ConfigError, DataError


def test_rdp_by_hand_and_against_opacus():
    # order 2, q = 1/2, sigma = 1: A_2 = 1/4 + 1/2 + e/4 (Mironov et al. 2019, Sec. 3.3)
    assert rdp(0.5, 1, 1.0, (2,))[0] == pytest.approx(math.log(0.75 + math.e / 4), rel=1e-14)
    # q = 1: the Gaussian mechanism's a / (2 sigma^2), times the steps
    assert rdp(1.0, 3, 2.0, (2, 5)) == pytest.approx([3 * 2 / 8, 3 * 5 / 8], rel=1e-14)
    orders = tuple(range(2, 64))
    for q, sigma, steps in [(0.01, 1.0, 1000), (0.3, 0.7, 20)]:
        expected = compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=list(orders))
        assert rdp(q, steps, sigma, orders) == pytest.approx(expected, rel=1e-10)


def test_profile_delta_by_hand_and_inverts_opacus():
    # q = 1, T = 1, sigma = 1, order 2: rho = 1; delta(1) = exp(0 + 0 - 2 log 2) = 1/4
    assert profile_delta(np.array([1.0]), np.array([1.0]), (2,))[0] == pytest.approx(0.25)
    assert profile_delta(np.array([1.0]), np.array([1.0]), (2,))[0] >= 0.25  # rounded up
    assert profile_delta(np.array([0.0]), np.array([5.0]), (2,))[0] == 1.0  # capped at 1
    orders = (2, 3, 4, 8, 16, 32)
    rho = compute_rdp(q=0.05, noise_multiplier=1.2, steps=200, orders=list(orders))
    eps, _ = get_privacy_spent(orders=list(orders), rdp=rho, delta=1e-5)
    assert profile_delta(np.array([eps]), rho, orders)[0] == pytest.approx(1e-5, rel=1e-8)


def test_accountant_epsilon_is_opacus():
    accountant = RDPAccountant()
    accountant.history = [(1.1, 0.02, 500)]  # (noise multiplier, sample rate, steps)
    assert accountant_epsilon(0.02, 500, 1.1, 1e-5) == accountant.get_epsilon(delta=1e-5)


def test_curve_is_the_maximum_of_its_eps_delta_pieces():
    curve = AccountantCurve(0.1, 50, 1.5)
    xs = np.array([0.0, 1e-4, 0.01, 0.2, 0.5, 0.9, 1.0])
    pieces = np.max(
        [fdp.EpsDeltaCurve(e, d)(xs) for e, d in zip(curve.epsilons, curve.deltas, strict=True)], 0
    )
    assert curve(xs) == pytest.approx(pieces, abs=1e-15)
    for y in (0.01, 0.3, 0.7, 0.99, 1.0):
        pieces = [
            fdp.EpsDeltaCurve(e, d).blow_up_inverse(y)
            for e, d in zip(curve.epsilons, curve.deltas, strict=True)
        ]
        assert curve.blow_up_inverse(y) == pytest.approx(max(pieces), abs=1e-15)
        assert 1 - curve(curve.blow_up_inverse(y)) >= y - 1e-12


def test_curve_lies_below_the_exact_gaussian_curve_at_q_1():
    # one step at q = 1 is the Gaussian mechanism, exactly (1 / sigma)-GDP: the accountant's
    # curve must claim no more privacy than the truth (a valid, lower curve)
    xs = np.linspace(0.0, 1.0, 201)
    for sigma in (0.5, 1.0, 3.0):
        assert np.all(
            AccountantCurve(1.0, 1, sigma)(xs) <= fdp.GaussianCurve(1 / sigma)(xs) + 1e-12
        )


def test_family_is_ordered_by_the_noise():
    xs = np.linspace(0.0, 1.0, 101)
    sigmas = [0.6, 0.8, 1.0, 1.5, 3.0]
    curves = [AccountantCurve(0.05, 100, s)(xs) for s in sigmas]
    assert all(np.all(low <= high + 1e-15) for low, high in itertools.pairwise(curves))
    eps = [accountant_epsilon(0.05, 100, s, 1e-5) for s in sigmas]
    assert eps == sorted(eps, reverse=True)
    rejected = [fdp.rejects(AccountantCurve(0.05, 100, s), 500, 100, 92, 0.05) for s in sigmas]
    assert rejected == sorted(rejected)  # False ... False, True ...: a suffix in sigma


def test_bound_is_the_accountant_epsilon_at_the_edge_of_the_rejected_noises():
    m, guesses, correct, q, steps = 1000, 200, 180, 0.01, 1000
    result = epsilon_lower_dpsgd(m, guesses, correct, q=q, steps=steps)
    assert (result.method, result.kind, result.m, result.guesses) == (
        "one_run_fdp_dpsgd", "bound", m, guesses
    )  # fmt: skip
    assert 0 < result.epsilon_lower < result.ceiling
    # the bound is the accountant's epsilon at the edge noise: just below it is rejected
    # (less privacy than the edge), just above it is not
    sigma = _least_rejected_noise(m, guesses, correct, 0.05, q, steps)
    assert result.epsilon_lower == accountant_epsilon(q, steps, sigma, 1e-5)
    assert fdp.rejects(AccountantCurve(q, steps, sigma), m, guesses, correct, 0.05)
    assert not fdp.rejects(AccountantCurve(q, steps, sigma * 0.999), m, guesses, correct, 0.05)
    assert fdp.rejects(AccountantCurve(q, steps, sigma * 1.001), m, guesses, correct, 0.05)


def test_bound_is_zero_at_chance_and_monotone_in_correct():
    assert epsilon_lower_dpsgd(1000, 100, 50, q=0.1, steps=50).epsilon_lower == 0.0
    bounds = [
        epsilon_lower_dpsgd(500, 100, v, q=0.1, steps=50).epsilon_lower for v in (80, 90, 100)
    ]
    assert bounds == sorted(bounds) and bounds[0] > 0


def test_audit_from_scores():
    scores = np.array([0.3, -1.0, 2.0, 0.5, -0.2, 1.1, 3.0, -2.0])
    included = np.array([1, 0, 1, 0, 1, 1, 1, 0], bool)
    result = audit_one_run_dpsgd(scores, included, k_plus=3, k_minus=2, q=0.5, steps=4, delta=1e-5)
    # IN for 3.0, 2.0, 1.1 (all in: 3 right); OUT for -2.0, -1.0 (both out: 2 right)
    assert (result.m, result.guesses, result.correct) == (8, 5, 5)
    assert result.epsilon_lower == result.ceiling


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"q": 0.0}, ConfigError, "sample rate"),
        ({"q": 1.5}, ConfigError, "sample rate"),
        ({"steps": 0}, ConfigError, "steps"),
        ({"beta": 1.0}, ConfigError, "beta"),
        ({"delta": 0.0}, ConfigError, "delta"),
        ({"correct": 300}, DataError, "correct"),
    ],
)
def test_bad_settings(kwargs, error, text):
    args = {"m": 1000, "guesses": 200, "correct": 150, "q": 0.1, "steps": 10} | kwargs
    with pytest.raises(error, match=text):
        epsilon_lower_dpsgd(**args)
    with pytest.raises(ConfigError, match="noise multiplier"):
        AccountantCurve(0.1, 10, 0.0)
