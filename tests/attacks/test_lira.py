"""LiRA (Carlini et al. 2022): exact values on hand-computed arrays."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from mialens.attacks import ReferenceSignals, TargetSignals
from mialens.attacks.lira import LiRAOffline, LiRAOnline
from mialens.errors import DataError

# Four reference models, two samples, one query.
# sample 0: values [1, 3, 0, 2], IN for models 0, 1 -> IN {1, 3}, OUT {0, 2}
#           mu_in = 2, var_in = 1; mu_out = 1, var_out = 1
# sample 1: values [5, 4, 6, 2], IN for models 1, 2 -> IN {4, 6}, OUT {5, 2}
#           mu_in = 5, var_in = 1; mu_out = 3.5, var_out = 2.25
VALUES = np.array([[1.0, 5.0], [3.0, 4.0], [0.0, 6.0], [2.0, 2.0]])[:, :, None]
MEMBER = np.array([[True, False], [True, True], [False, True], [False, False]])
LABELS = np.array([0, 1])
TARGET = np.array([[2.5], [3.0]])


def refs(values=VALUES, member=MEMBER):
    return ReferenceSignals(values=values, member=member, labels=LABELS)


def logpdf(x, mu, var):
    return -0.5 * (x - mu) ** 2 / var - 0.5 * math.log(2 * math.pi * var)


def test_online_per_example_variance_exact():
    attack = LiRAOnline(variance="per_example").fit(refs())
    scores = attack.score(TargetSignals(TARGET, LABELS))
    # sample 0: logN(2.5; 2, 1) - logN(2.5; 1, 1) = -0.125 + 1.125 = 1
    # sample 1: logN(3; 5, 1) - logN(3; 3.5, 2.25) = -2 + 1/18 + log(1.5)
    assert scores[0] == pytest.approx(1.0, abs=1e-12)
    assert scores[1] == pytest.approx(-2 + 1 / 18 + math.log(1.5), abs=1e-12)


def test_online_global_variance_is_pooled_within_sample_variance():
    attack = LiRAOnline(variance="global").fit(refs())
    # pooled IN variance: (1 + 1 + 1 + 1) / 4 = 1; pooled OUT: (1 + 1 + 2.25 + 2.25) / 4 = 1.625
    assert attack.std_in_ == pytest.approx(1.0)
    assert attack.std_out_ == pytest.approx(math.sqrt(1.625))
    scores = attack.score(TargetSignals(TARGET, LABELS))
    expected0 = logpdf(2.5, 2, 1) - logpdf(2.5, 1, 1.625)
    expected1 = logpdf(3.0, 5, 1) - logpdf(3.0, 3.5, 1.625)
    np.testing.assert_allclose(scores, [expected0, expected1], rtol=0, atol=1e-12)


def test_auto_variance_uses_global_below_32_models_per_side():
    assert LiRAOnline().fit(refs()).variance_ == "global"
    rng = np.random.default_rng(0)
    member = np.zeros((64, 3), bool)
    for n in range(3):
        member[rng.permutation(64)[:32], n] = True
    values = rng.normal(size=(64, 3, 1))
    assert LiRAOnline().fit(refs(values, member)).variance_ == "per_example"
    assert LiRAOffline().fit(refs(values, member)).variance_ == "per_example"


def test_offline_is_one_sided_gaussian_cdf():
    attack = LiRAOffline(variance="per_example").fit(refs())
    scores = attack.score(TargetSignals(TARGET, LABELS))
    # log Pr[Z <= o], Z ~ N(mu_out, var_out): sample 0: Phi(1.5); sample 1: Phi(-1/3)
    expected = np.log([norm.cdf(1.5), norm.cdf((3.0 - 3.5) / 1.5)])
    np.testing.assert_allclose(scores, expected, rtol=1e-12)


def test_offline_prefers_higher_confidence_only():
    # One-sided: an observation far *above* the OUT mean is more member-like than the mean,
    # unlike the two-sided -log N test of the official code.
    attack = LiRAOffline(variance="per_example").fit(refs())
    scores = [
        attack.score(TargetSignals(np.array([[v], [3.5]]), LABELS))[0] for v in (-9.0, 1.0, 9.0)
    ]
    assert scores[0] < scores[1] < scores[2]


def test_median_center():
    values = np.array([[0.0], [1.0], [10.0], [5.0], [6.0], [7.0]])[:, :, None]
    member = np.array([[False], [False], [False], [True], [True], [True]])
    r = ReferenceSignals(values=values, member=member, labels=np.array([0]))
    mean = LiRAOnline(center="mean", variance="per_example").fit(r)
    median = LiRAOnline(center="median", variance="per_example").fit(r)
    assert mean.mu_out_[0, 0] == pytest.approx(11 / 3)
    assert median.mu_out_[0, 0] == pytest.approx(1.0)
    assert median.mu_in_[0, 0] == pytest.approx(6.0)
    # spread around the median: OUT deviations (-1, 0, 9) -> var 82/3
    assert median.std_out_[0, 0] == pytest.approx(math.sqrt(82 / 3))


def test_scores_average_over_queries():
    two = np.concatenate([VALUES, VALUES + 1.0], axis=2)
    attack = LiRAOnline(variance="per_example").fit(refs(two))
    target = np.concatenate([TARGET, TARGET + 1.0], axis=1)
    scores = attack.score(TargetSignals(target, LABELS))
    single = LiRAOnline(variance="per_example").fit(refs()).score(TargetSignals(TARGET, LABELS))
    np.testing.assert_allclose(scores, single, atol=1e-12)  # both queries shifted alike


def test_scores_are_the_mean_of_the_per_query_scores_exact():
    # query 0 as above; query 1: same references, target observations one higher
    # sample 0, query 1: logN(3.5; 2, 1) - logN(3.5; 1, 1) = -1.125 + 3.125 = 2
    # sample 1, query 1: logN(4; 5, 1) - logN(4; 3.5, 2.25) = -0.5 + 1/18 + log(1.5)
    two = np.concatenate([VALUES, VALUES], axis=2)
    target = np.concatenate([TARGET, TARGET + 1.0], axis=1)
    scores = LiRAOnline(variance="per_example").fit(refs(two)).score(TargetSignals(target, LABELS))
    expected = [(1.0 + 2.0) / 2, (-2.0 - 0.5) / 2 + 1 / 18 + math.log(1.5)]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)
    offline = LiRAOffline(variance="per_example").fit(refs(two))
    got = offline.score(TargetSignals(target, LABELS))
    cdf = norm.cdf([[1.5, 2.5], [-1 / 3, 1 / 3]])  # (o - mu_out) / s_out per query
    np.testing.assert_allclose(got, np.log(cdf).mean(axis=1), rtol=1e-12)


def test_offline_global_variance_is_pooled_out_variance():
    attack = LiRAOffline(variance="global").fit(refs())
    assert attack.std_out_ == pytest.approx(math.sqrt(1.625))
    scores = attack.score(TargetSignals(TARGET, LABELS))
    expected = np.log(norm.cdf([(2.5 - 1) / math.sqrt(1.625), (3.0 - 3.5) / math.sqrt(1.625)]))
    np.testing.assert_allclose(scores, expected, rtol=1e-12)


def test_constant_reference_values_do_not_divide_by_zero():
    values = np.ones((4, 2, 1))
    scores = (
        LiRAOnline(variance="per_example").fit(refs(values)).score(TargetSignals(TARGET, LABELS))
    )
    assert np.isfinite(scores).all()


def test_online_needs_in_and_out_models():
    member = MEMBER.copy()
    member[:, 0] = False
    with pytest.raises(DataError, match="at least one reference model"):
        LiRAOnline().fit(refs(member=member))
    member[:, 0] = True
    with pytest.raises(DataError, match="did not train"):
        LiRAOffline().fit(refs(member=member))


def test_signal_is_the_logit_scaled_confidence():
    assert LiRAOnline().signal().name == LiRAOffline().signal().name == "rescaled_logit"
