"""Choosing k+, k- and the score validly: fixed, Bonferroni-corrected, or on a split."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.special import logit

from mialens.dp import one_run
from mialens.dp.result import DPAuditResult
from mialens.dp.selection import (
    bonferroni,
    check_grid,
    counts_of,
    fdp_bound,
    fixed,
    halves,
    split,
    steinke_bound,
)
from mialens.errors import ConfigError

# twenty canaries in a shuffled order: the eight highest scores IN, the eight lowest OUT,
# the middle four alternating
_RANK_IN = [0] * 8 + [1, 0, 1, 0] + [1] * 8  # by ascending score
_ORDER = np.random.default_rng(5).permutation(20)
SCORES = np.empty(20)
SCORES[_ORDER] = np.arange(20) / 20
INCLUDED = np.empty(20, dtype=bool)
INCLUDED[_ORDER] = np.array(_RANK_IN, dtype=bool)
PURE = steinke_bound(0.0)
PURE_RESULT = PURE(10, 1, 0, 0.05)


def _all_correct(guesses: int, beta: float) -> float:
    """Closed form with delta = 0: q^r = beta at q = beta^(1/r), eps = logit(q)."""
    return float(logit(beta ** (1 / guesses)))


def test_fixed_is_the_plain_one_run_bound():
    got = fixed(SCORES, INCLUDED, score="loss", k_plus=4, k_minus=4, bound=PURE, beta=0.05)
    assert (got.result.guesses, got.result.correct) == (8, 8)
    exact = _all_correct(8, 0.05)
    assert exact - 1e-6 <= got.result.epsilon_lower <= exact
    direct = one_run.audit_one_run(SCORES, INCLUDED, k_plus=4, k_minus=4, delta=0.0)
    assert got.result == direct
    assert got.to_json()["selection"] == {"rule": "fixed"}


def test_bonferroni_pays_for_the_grid_and_the_scores():
    other = SCORES[::-1].copy()  # guesses all wrong on this one
    got = bonferroni(
        {"a": SCORES, "b": other}, INCLUDED, grid=[(0.1, 0.1), (0.4, 0.4)], bound=PURE, beta=0.05
    )
    # G = 2 x 2 tests at 0.0125 each; the best is k+ = k- = 8 on "a", 16 of 16 correct
    assert (got.score, got.k_plus, got.k_minus) == ("a", 8, 8)
    exact = _all_correct(16, 0.05 / 4)
    assert exact - 1e-6 <= got.result.epsilon_lower <= exact
    assert got.result.beta == 0.05
    assert got.record["tests"] == 4 and got.record["beta_per_test"] == pytest.approx(0.0125)
    assert got.record["grid"] == [[0.1, 0.1], [0.4, 0.4]]
    assert got.result.ceiling == pytest.approx(_all_correct(16, 0.0125), abs=1e-6)
    # the corrected bound is below the uncorrected one on the same guesses
    plain = fixed(SCORES, INCLUDED, score="a", k_plus=8, k_minus=8, bound=PURE, beta=0.05)
    assert got.result.epsilon_lower < plain.result.epsilon_lower


def test_split_chooses_on_one_half_and_audits_the_other():
    rng = np.random.default_rng(3)
    m = 400
    included = rng.random(m) < 0.5
    order = rng.permutation(m)  # shuffled, non-contiguous canary positions
    strong = np.where(included, 1.0, 0.0) + rng.normal(0, 0.3, m)
    noise = rng.normal(size=m)
    grid = [(0.05, 0.05), (0.25, 0.25)]
    got = split(
        {"noise": noise[order], "strong": strong[order]},
        included[order],
        grid=grid,
        bound=PURE,
        beta=0.05,
        seed=7,
    )
    chooser, audited = halves(m, 7)
    assert np.intersect1d(chooser, audited).size == 0 and chooser.size + audited.size == m
    assert got.record["selection_canaries"] == 200 and got.record["audited_canaries"] == 200
    assert got.score == "strong" and got.result.m == 200
    shares = tuple(got.record["chosen_shares"])
    k = counts_of(shares, 200)
    expected = fixed(
        strong[order][audited], included[order][audited], score="strong",
        k_plus=k[0], k_minus=k[1], bound=PURE, beta=0.05, seed=7,
    )  # fmt: skip
    assert got.result == expected.result and got.result.epsilon_lower > 0


def test_counts_round_and_keep_one_guess():
    assert counts_of((0.05, 0.05), 100) == (5, 5)
    assert counts_of((0.5, 0.5), 3) == (2, 1)  # never more than m guesses
    assert counts_of((0.001, 0.0), 10) == (1, 0)
    with pytest.raises(ConfigError, match="sum to"):
        check_grid([(0.7, 0.7)])
    with pytest.raises(ConfigError, match="empty"):
        check_grid([])


def test_fdp_bound_matches_the_library():
    from mialens.dp import fdp

    got = fdp_bound("eps_delta", 1e-5)(1000, 100, 90, 0.05)
    assert got == fdp.epsilon_lower(1000, 100, 90, beta=0.05, delta=1e-5, family="eps_delta")


def test_on_data_without_signal_only_the_uncorrected_maximum_claims_privacy_loss():
    # scores independent of the bits: the mechanism is 0-DP, so a valid bound exceeds 0
    # with probability at most beta. ML Privacy Meter's maximum over k without correction
    # does so far more often.
    grid = [(s, s) for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)]
    m, reps, beta = 200, 200, 0.05

    def rejects_zero(m: int, guesses: int, correct: int, level: float) -> DPAuditResult:
        # epsilon_lower > 0 exactly when 0-DP is rejected; 1.0 stands for "some epsilon > 0"
        p = one_run.p_value(m, guesses, correct, 0.0, 0.0)
        return replace(PURE_RESULT, m=m, guesses=guesses, correct=correct, beta=level,
                       epsilon_lower=float(p < level))  # fmt: skip

    rng = np.random.default_rng(11)
    above = {"uncorrected": 0, "bonferroni": 0, "split": 0}
    for rep in range(reps):
        included = rng.random(m) < 0.5
        scores = {"a": rng.normal(size=m), "b": rng.normal(size=m)}
        best = max(
            fixed(
                s, included, score=n, k_plus=k[0], k_minus=k[1], bound=rejects_zero, beta=beta
            ).result.epsilon_lower
            for n, s in scores.items()
            for k in (counts_of(g, m) for g in grid)
        )
        above["uncorrected"] += best > 0
        corrected = bonferroni(scores, included, grid=grid, bound=rejects_zero, beta=beta)
        above["bonferroni"] += corrected.result.epsilon_lower > 0
        halved = split(scores, included, grid=grid, bound=rejects_zero, beta=beta, seed=rep)
        above["split"] += halved.result.epsilon_lower > 0
    assert above["bonferroni"] <= beta * reps and above["split"] <= 1.5 * beta * reps
    assert above["uncorrected"] > 2 * beta * reps
