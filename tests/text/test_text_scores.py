"""Sequence membership scores of language models: exact values on hand-built arrays."""

import math
import zlib

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from mialens.attacks.text_scores import (
    loss_score,
    lowercase_ratio,
    min_k,
    min_k_plus_plus,
    perplexity,
    recall_score,
    reference_ratio,
    sequence_lira,
    zlib_ratio,
)
from mialens.errors import DataError
from mialens.signals.token_logprobs import TokenLogProbs

NAN = np.nan
# Three samples of 3, 5 and 1 scored tokens; the padding (NaN, 9) must never be read.
LOGPROB = np.array(
    [
        [-1.0, -2.0, -3.0, NAN, 9.0],
        [-0.5, -0.5, -4.0, -1.0, -1.0],
        [-0.25, 9.0, NAN, NAN, 9.0],
    ]
)
LENGTHS = np.array([3, 5, 1])
LP = (LOGPROB, LENGTHS)  # mean LL: -2, -1.4, -0.25


def test_loss_and_perplexity_exact_and_padding_ignored():
    np.testing.assert_allclose(loss_score(LP), [-2.0, -1.4, -0.25], rtol=1e-15)
    np.testing.assert_allclose(perplexity(LP), np.exp([2.0, 1.4, 0.25]), rtol=1e-15)
    stats = TokenLogProbs(LOGPROB, np.zeros_like(LOGPROB), np.zeros_like(LOGPROB), LENGTHS)
    np.testing.assert_array_equal(loss_score(stats), loss_score(LP))


def test_rows_are_scored_independently_of_order():
    order = np.array([2, 0, 1])
    permuted = (LOGPROB[order], LENGTHS[order])
    for score in (loss_score, min_k):
        np.testing.assert_array_equal(score(permuted), score(LP)[order])


def test_min_k_rounds_k_times_length_down_but_keeps_one_token():
    # k = 0.2: floor(0.6) = 0 -> 1, floor(1.0) = 1, floor(0.2) = 0 -> 1
    np.testing.assert_allclose(min_k(LP), [-3.0, -4.0, -0.25], rtol=1e-15)
    # k = 0.5: floor(1.5) = 1, floor(2.5) = 2 (lowest -4 and -1), 1
    np.testing.assert_allclose(min_k(LP, k=0.5), [-3.0, -2.5, -0.25], rtol=1e-15)
    np.testing.assert_allclose(min_k(LP, k=1.0), loss_score(LP), rtol=1e-15)
    five = (LOGPROB[1:2], LENGTHS[1:2])
    assert min_k(five, k=0.39)[0] == -4.0  # floor(1.95) = 1
    assert min_k(five, k=0.4)[0] == -2.5  # floor(2.0) = 2


def test_min_k_ties_give_the_same_mean_whichever_is_taken():
    tied = (np.array([[-1.0, -2.0, -1.0, -2.0, -1.0]]), np.array([5]))
    assert min_k(tied, k=0.6)[0] == pytest.approx(-5 / 3, abs=1e-15)  # -2, -2 and one -1
    assert min_k(tied, k=0.2)[0] == -2.0


def _plus_plus_stats() -> TokenLogProbs:
    # sample 0: z = (-1 + 1.5)/0.5 = 1, (-2 + 1)/2 = -0.5, point mass (var 0) -> 0
    # sample 1: z = (-3 + 2)/1 = -1, (-0.5 + 1)/0.25 = 2
    logprob = np.array([[-1.0, -2.0, 0.0, NAN], [-3.0, -0.5, 7.0, 7.0]])
    mean = np.array([[-1.5, -1.0, 0.0, NAN], [-2.0, -1.0, 7.0, 7.0]])
    var = np.array([[0.25, 4.0, 0.0, NAN], [1.0, 0.0625, -1.0, 7.0]])
    return TokenLogProbs(logprob, mean, var, np.array([3, 2]))


def test_min_k_plus_plus_exact_with_zero_variance_guard():
    stats = _plus_plus_stats()
    np.testing.assert_allclose(min_k_plus_plus(stats), [-0.5, -1.0], rtol=1e-15)
    np.testing.assert_allclose(min_k_plus_plus(stats, k=1.0), [1 / 6, 0.5], rtol=1e-15)


def test_min_k_plus_plus_refuses_bad_statistics():
    with pytest.raises(DataError, match="needs TokenLogProbs"):
        min_k_plus_plus(LP)
    stats = _plus_plus_stats()
    negative = TokenLogProbs(stats.logprob, stats.mean, -stats.var, stats.lengths)
    with pytest.raises(DataError, match="non-negative"):
        min_k_plus_plus(negative)


def test_zlib_ratio_divides_the_log_likelihood_by_the_compressed_length():
    assert len(zlib.compress(b"")) == 8  # the zlib header and trailer alone
    texts = ["", "é" * 40, b"abcabcabc"]
    sizes = [8, len(zlib.compress("é".encode() * 40)), len(zlib.compress(b"abcabcabc"))]
    np.testing.assert_allclose(
        zlib_ratio(LP, texts), np.array([-2.0, -1.4, -0.25]) / sizes, rtol=1e-15
    )
    with pytest.raises(DataError, match="one text per sample: 2 for 3"):
        zlib_ratio(LP, ["a", "b"])


def test_ratio_attacks_exact():
    other = (np.array([[-3.0, 5.0], [-2.8, NAN], [-1.0, -0.0]]), np.array([1, 1, 2]))
    # other LL: -3, -2.8, -0.5 over target LL -2, -1.4, -0.25
    expected = [1.5, 2.0, 2.0]
    np.testing.assert_allclose(lowercase_ratio(LP, other), expected, rtol=1e-15)
    np.testing.assert_allclose(reference_ratio(LP, other), expected, rtol=1e-15)
    # ReCaLL: LL(x | P) / LL(x), with the prefixed scores first
    np.testing.assert_allclose(recall_score(other, LP), expected, rtol=1e-15)


def test_ratios_refuse_a_zero_denominator_and_mismatched_samples():
    certain = (np.array([[0.0, 0.0], [-1.0, -1.0]]), np.array([2, 1]))
    with pytest.raises(DataError, match=r"rows \[0\] is 0"):
        reference_ratio(certain, certain)
    with pytest.raises(DataError, match="same samples, got 3 and 2"):
        recall_score(LP, certain)


@pytest.mark.parametrize(
    ("lp", "match"),
    [
        ((LOGPROB[0], LENGTHS), r"must be \(n, T-1\)"),
        ((LOGPROB, LENGTHS[:2]), "lengths must be 3 integers"),
        ((LOGPROB, LENGTHS.astype(float)), "lengths must be 3 integers"),
        ((LOGPROB, np.array([3, 6, 1])), r"1 to 5 scored tokens; rows \[1\] have \[6\]"),
        ((LOGPROB, np.array([0, 5, 1])), r"rows \[0\] have \[0\]"),
        ((LOGPROB, np.array([4, 5, 1])), "NaN or inf"),
    ],
)
def test_bad_token_arrays_are_refused(lp, match):
    with pytest.raises(DataError, match=match):
        loss_score(lp)


def test_min_k_refuses_k_outside_the_unit_interval():
    for k in (0.0, 1.5, -0.2):
        with pytest.raises(DataError, match=r"k must be in \(0, 1\]"):
            min_k(LP, k=k)


# The hand case of tests/attacks/test_lira.py as sequence scores of four reference LMs.
REF_SCORES = np.array([[1.0, 5.0], [3.0, 4.0], [0.0, 6.0], [2.0, 2.0]])
REF_IN = np.array([[True, False], [True, True], [False, True], [False, False]])
TARGET = np.array([2.5, 3.0])


def test_sequence_lira_online_and_offline_exact():
    online = sequence_lira(TARGET, REF_SCORES, REF_IN, variance="per_example")
    np.testing.assert_allclose(online, [1.0, -2 + 1 / 18 + math.log(1.5)], atol=1e-12)
    offline = sequence_lira(TARGET, REF_SCORES, REF_IN, online=False, variance="per_example")
    np.testing.assert_allclose(offline, np.log([norm.cdf(1.5), norm.cdf(-1 / 3)]), rtol=1e-12)


def test_sequence_lira_refuses_bad_shapes():
    with pytest.raises(DataError, match=r"ref_scores \(R, n\)"):
        sequence_lira(TARGET, REF_SCORES[:, :1], REF_IN)
    with pytest.raises(DataError, match="boolean"):
        sequence_lira(TARGET, REF_SCORES, REF_IN.astype(int))
    with pytest.raises(DataError, match="at least one reference model it did not train"):
        sequence_lira(TARGET, REF_SCORES, np.ones_like(REF_IN))


def test_members_with_higher_log_probabilities_rank_higher():
    rng = np.random.default_rng(7)
    n, width = 200, 30
    member = np.zeros(n, bool)
    member[rng.permutation(n)[: n // 2]] = True  # shuffled, not the first half
    lengths = rng.integers(5, width + 1, size=n)
    shift = np.where(member, 0.5, 0.0)[:, None]
    logprob = np.minimum(rng.normal(-2.0, 1.0, size=(n, width)) + shift, 0.0)
    stats = TokenLogProbs(logprob, np.full_like(logprob, -2.0), np.ones_like(logprob), lengths)
    reference = (np.minimum(rng.normal(-2.0, 1.0, size=(n, width)), 0.0), lengths)
    for scores in (
        loss_score(stats),
        min_k(stats),
        min_k_plus_plus(stats),
        reference_ratio(stats, reference),
    ):
        assert roc_auc_score(member, scores) > 0.75


def test_min_k_plus_plus_on_statistics_of_real_logits():
    import torch

    from mialens.signals.token_logprobs import token_statistics

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 6, 7))
    tokens = rng.integers(0, 7, size=(2, 6))
    stats = token_statistics(logits, tokens, np.array([6, 4]))
    logp = torch.log_softmax(torch.as_tensor(logits[:, :-1]), -1).numpy()
    p = np.exp(logp)
    mu = (p * logp).sum(-1)
    sigma = np.sqrt((p * logp**2).sum(-1) - mu**2)  # the released code's form
    z = (np.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0] - mu) / sigma
    expected = [z[0, :5].mean(), z[1, :3].mean()]
    np.testing.assert_allclose(min_k_plus_plus(stats, k=1.0), expected, rtol=1e-5)
