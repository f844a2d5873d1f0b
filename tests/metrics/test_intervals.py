from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from mialens.errors import ConfigError, DataError
from mialens.metrics import batch_metrics, bootstrap_ci, summarize
from mialens.metrics.threshold_position import threshold_shifts
from mialens.seeding import rng

LEVELS = [0.1, 0.01]


def _binormal(seed: int, n_targets: int, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Members ~ N(1, 1), non-members ~ N(0, 1); membership shuffled per target row."""
    gen = np.random.default_rng(seed)
    half = np.r_[np.ones(n_samples // 2, bool), np.zeros(n_samples - n_samples // 2, bool)]
    members = np.stack([gen.permutation(half) for _ in range(n_targets)])
    return gen.normal(size=members.shape) + members, members


def test_summarize_hand_values():
    out = summarize([3.0, 1.0, 2.0])
    # mean 2, std (ddof=1) 1. With 2 degrees of freedom the t quantile has the closed
    # form t_{(1+c)/2, 2} = c * sqrt(2 / (1 - c^2)): t_{0.975, 2} = 4.30265272974946.
    half = 0.95 * np.sqrt(2 / (1 - 0.95**2)) / np.sqrt(3)
    assert out == pytest.approx(
        {"mean": 2, "std": 1, "min": 1, "max": 3, "n": 3, "ci_low": 2 - half, "ci_high": 2 + half},
        abs=1e-12,
    )
    wider = summarize([3.0, 1.0, 2.0], confidence=0.99)
    assert wider["ci_low"] < out["ci_low"] and wider["ci_high"] > out["ci_high"]


def test_summarize_clips_a_rate_interval_to_its_range():
    # mean 0.02, std 0.02 over 3 targets: the t interval is 0.02 -/+ 0.0497, below 0
    # for a TPR; clipped to [0, 1] it still covers everything the t interval covers.
    raw = summarize([0.0, 0.02, 0.04])
    out = summarize([0.0, 0.02, 0.04], bounds=(0.0, 1.0))
    assert raw["ci_low"] < 0 and out["ci_low"] == 0.0
    assert out["ci_high"] == pytest.approx(raw["ci_high"], abs=0)


def test_summarize_single_target_is_degenerate():
    out = summarize([0.7])
    assert out == {
        "mean": 0.7,
        "std": 0.0,
        "min": 0.7,
        "max": 0.7,
        "n": 1,
        "ci_low": 0.7,
        "ci_high": 0.7,
    }


@pytest.mark.parametrize(
    ("values", "confidence", "error"),
    [
        ([], 0.95, DataError),
        ([[1.0, 2.0]], 0.95, DataError),
        ([1.0, np.nan], 0.95, DataError),
        ([1.0, 2.0], 1.0, ConfigError),
        ([1.0, 2.0], 0.0, ConfigError),
    ],
)
def test_summarize_validates(values, confidence, error):
    with pytest.raises(error):
        summarize(values, confidence)


def test_bootstrap_matches_explicit_resampling():
    """The weighted fast path equals re-scoring explicitly resampled arrays."""
    scores, members = _binormal(0, 3, 120)
    scores = np.round(scores, 1)  # ties
    n_boot, seed = 40, 5
    out = bootstrap_ci(scores, members, LEVELS, n_boot, confidence=0.9, seed=seed, widen=False)
    draws = rng(seed, "bootstrap").integers(0, 120, size=(n_boot, 120))
    reps = [batch_metrics(scores[:, d], members[:, d], LEVELS) for d in draws]
    assert out["n_boot"] == n_boot and out["n_skipped"] == 0

    def check(interval, values):
        low, high = np.quantile(values, [0.05, 0.95])
        assert interval["low"] == pytest.approx(low, abs=1e-12)
        assert interval["high"] == pytest.approx(high, abs=1e-12)

    check(out["auc"], [r["auc"].mean() for r in reps])
    check(out["advantage"], [r["advantage"].mean() for r in reps])
    for i, level in enumerate(LEVELS):
        check(out["tpr_at_fpr"][level], [r["tpr"][:, i].mean() for r in reps])
    # 60 non-members allow 6 false positives at 10% FPR and none at 1%: both are widened
    # by the threshold's position, one uniform per replicate
    widened = bootstrap_ci(scores, members, LEVELS, n_boot, confidence=0.9, seed=seed)
    assert widened["widened"] == LEVELS and widened["auc"] == out["auc"]
    uniforms = rng(seed, "bootstrap", "threshold position").random((n_boot, 2))
    shifts = threshold_shifts(scores, members, np.array(LEVELS), uniforms)
    for i, level in enumerate(LEVELS):
        moved = np.clip([r["tpr"][:, i].mean() for r in reps] + shifts[:, i], 0, 1)
        check(widened["tpr_at_fpr"][level], moved)


def test_bootstrap_is_deterministic():
    scores, members = _binormal(1, 4, 200)
    first = bootstrap_ci(scores, members, LEVELS, n_boot=50, seed=3)
    assert first == bootstrap_ci(scores, members, LEVELS, n_boot=50, seed=3)
    assert first != bootstrap_ci(scores, members, LEVELS, n_boot=50, seed=4)
    assert set(first["tpr_at_fpr"]) == {0.1, 0.01}
    for interval in (first["auc"], first["advantage"], *first["tpr_at_fpr"].values()):
        assert interval["low"] <= interval["high"]


def test_bootstrap_skips_then_refuses_degenerate_replicates():
    # One member among 10 samples: P(no member drawn) = 0.9**10 ~ 35% of replicates.
    scores = np.linspace(0, 1, 10)[None]
    members = np.zeros((1, 10), bool)
    members[0, 6] = True
    with pytest.raises(DataError, match="replicates drew no member or no non-member"):
        bootstrap_ci(scores, members, LEVELS, n_boot=100)
    # 3 members among 40: P(skip) = (37/40)**40 ~ 4%: skipped and counted.
    scores = np.linspace(0, 1, 40)[None]
    members = np.zeros((1, 40), bool)
    members[0, [5, 17, 33]] = True
    out = bootstrap_ci(scores, members, LEVELS, n_boot=200, seed=1)
    assert 0 < out["n_skipped"] <= 20
    assert out["n_boot"] + out["n_skipped"] == 200


def test_bootstrap_validates_parameters():
    scores, members = _binormal(2, 2, 20)
    with pytest.raises(ConfigError):
        bootstrap_ci(scores, members, LEVELS, n_boot=0)
    with pytest.raises(ConfigError):
        bootstrap_ci(scores, members, LEVELS, confidence=1.5)
    with pytest.raises(DataError):
        bootstrap_ci(scores[0], members[0], LEVELS)


def test_bootstrap_auc_interval_covers_binormal_truth():
    """Seeded statistical check: 95% intervals cover Phi(1/sqrt(2)) in most runs."""
    true_auc = norm.cdf(1 / np.sqrt(2))  # ~0.7602
    covered = 0
    for rep in range(20):
        scores, members = _binormal(100 + rep, 2, 300)
        ci = bootstrap_ci(scores, members, LEVELS, n_boot=200, seed=rep)["auc"]
        covered += ci["low"] <= true_auc <= ci["high"]
    assert covered >= 16


def test_the_tpr_interval_at_few_false_positives_covers_once_widened():
    """Seeded: 8 targets scoring 2,000 shared samples (difficulty N(0, 1) + member + noise
    N(0, 1)), 1,000 non-members each. FPR 1% allows 10 false positives: the percentile
    interval, left as it is, covers the population TPR (0.91 of 80 audits). FPR 0.1%
    allows 1: the percentile interval alone covers in 0.64, widened by the threshold's
    position in all 80 (benchmarks/interval_coverage.py)."""
    levels = (0.001, 0.01)
    truth = dict(zip(levels, [norm.sf(norm.isf(a) - 1 / np.sqrt(2)) for a in levels], strict=True))
    gen = np.random.default_rng(11)
    covered = {True: np.zeros(2), False: np.zeros(2)}
    replicates = 80
    for r in range(replicates):
        members = np.stack([gen.permutation(np.arange(2000) < 1000) for _ in range(8)])
        scores = gen.normal(size=2000) + members + gen.normal(size=members.shape)
        both = {w: bootstrap_ci(scores, members, levels, 100, seed=r, widen=w) for w in covered}
        assert both[True]["widened"] == [0.001] and both[False]["widened"] == []
        assert both[True]["tpr_at_fpr"][0.01] == both[False]["tpr_at_fpr"][0.01]
        for w, ci in both.items():
            rates = ci["tpr_at_fpr"]
            covered[w] += [rates[a]["low"] <= truth[a] <= rates[a]["high"] for a in levels]
    plain, widened = covered[False] / replicates, covered[True] / replicates
    assert plain[0] < 0.75 and widened[0] >= 0.9 and plain[1] > 0.85, (plain, widened)
