"""Membership scores of language-model samples from per-token log-probabilities.

Every function maps the cached per-token statistics of one model
(:class:`~mialens.signals.token_logprobs.TokenLogProbs`, or a ``(logprob, lengths)`` pair
of a ``(n, T-1)`` array and the ``(n,)`` number of scored tokens of each row; positions at
or after a row's length are padding and never read) to one score per sample, higher =
more likely member. ``LL(x) = (1/L) sum_t log p(x_t | x_<t)`` below is a sample's mean
token log-likelihood over its ``L`` scored tokens, and ``log PPL(x) = -LL(x)``.

These are plain functions on arrays: no attack in the registry runs them yet, since the
audit does not run text models.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Literal

import numpy as np

from mialens.attacks.base import ReferenceSignals, TargetSignals
from mialens.attacks.lira import LiRAOffline, LiRAOnline
from mialens.errors import DataError
from mialens.signals.token_stats import TokenLogProbs

TokenScores = TokenLogProbs | tuple[np.ndarray, np.ndarray]


def _checked(lp: TokenScores, what: str = "lp") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(logprob float64, lengths int64, mask)`` of ``lp`` after checking its shapes, its
    lengths (1 to ``T-1`` scored tokens each) and that every scored value is finite."""
    logprob, lengths = (lp.logprob, lp.lengths) if isinstance(lp, TokenLogProbs) else lp
    logprob, lengths = np.asarray(logprob, dtype=np.float64), np.asarray(lengths)
    if logprob.ndim != 2:
        raise DataError(f"{what}: logprob must be (n, T-1), got shape {logprob.shape}")
    if lengths.shape != (logprob.shape[0],) or not np.issubdtype(lengths.dtype, np.integer):
        raise DataError(
            f"{what}: lengths must be {logprob.shape[0]} integers (one per row of logprob), "
            f"got shape {lengths.shape} of {lengths.dtype}"
        )
    bad = np.flatnonzero((lengths < 1) | (lengths > logprob.shape[1]))
    if bad.size:
        raise DataError(
            f"{what}: every sample needs 1 to {logprob.shape[1]} scored tokens; rows "
            f"{bad[:5].tolist()} have {lengths[bad[:5]].tolist()}"
        )
    mask = np.arange(logprob.shape[1]) < lengths[:, None]
    if not np.isfinite(logprob[mask]).all():
        raise DataError(f"{what}: the scored log-probabilities hold NaN or inf")
    return logprob, lengths.astype(np.int64), mask


def _mean_ll(lp: TokenScores, what: str = "lp") -> np.ndarray:
    """``LL(x)`` of every sample, float64 ``(n,)``."""
    logprob, lengths, mask = _checked(lp, what)
    return np.where(mask, logprob, 0.0).sum(axis=1) / lengths


def _same_n(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise DataError(f"{names} must score the same samples, got {a.shape[0]} and {b.shape[0]}")


def _ratio(num: np.ndarray, den: np.ndarray, what: str) -> np.ndarray:
    """``num / den``, refused where ``den`` (a mean NLL) is not positive."""
    zero = np.flatnonzero(den <= 0)
    if zero.size:
        raise DataError(
            f"{what}: the mean token NLL of rows {zero[:5].tolist()} is 0 (every token "
            "predicted with probability 1), so the ratio is undefined"
        )
    return num / den


def loss_score(lp: TokenScores) -> np.ndarray:
    """LOSS attack (Yeom et al. 2018, "Privacy Risk in Machine Learning: Analyzing the
    Connection to Overfitting", CSF, the loss-threshold adversary) on sequences: the
    negative mean token NLL ``LL(x) = -log PPL(x)``. No parameters."""
    return _mean_ll(lp)


def perplexity(lp: TokenScores) -> np.ndarray:
    """``PPL(x) = exp(-LL(x))`` of every sample, the statistic of Carlini et al. 2021 (Sec.
    6.1); lower = more likely member, so rank by :func:`loss_score` instead."""
    return np.exp(-_mean_ll(lp))


def zlib_ratio(lp: TokenScores, texts: Sequence[str | bytes]) -> np.ndarray:
    """Zlib attack (Carlini et al. 2021, "Extracting Training Data from Large Language
    Models", USENIX Security, Sec. 6.1): the log-perplexity over the zlib entropy, the
    length in bytes of ``zlib.compress`` (default level) of the UTF-8 text, negated so
    that higher = member: ``-log PPL(x) / |zlib(x)|``. The authors' released code ranks by
    the inverse ``|zlib(x)| / log PPL(x)``, which orders samples the same wherever
    ``PPL > 1`` and, unlike it, is defined at ``PPL = 1``."""
    ll = _mean_ll(lp)
    if len(texts) != ll.shape[0]:
        raise DataError(f"zlib_ratio needs one text per sample: {len(texts)} for {ll.shape[0]}")
    raw = [t.encode("utf-8") if isinstance(t, str) else bytes(t) for t in texts]
    return ll / np.array([len(zlib.compress(b)) for b in raw], dtype=np.float64)


def lowercase_ratio(lp: TokenScores, lp_lower: TokenScores) -> np.ndarray:
    """Lowercase attack (Carlini et al. 2021, Sec. 6.1): the target's log-perplexity of
    the lowercased sample over that of the original, ``log PPL(lower(x)) / log PPL(x)``,
    as the authors' released code ranks (higher = member). ``lp_lower`` scores the
    lowercased texts with the same model; their token counts may differ."""
    original, lower = _mean_ll(lp), _mean_ll(lp_lower, "lp_lower")
    _same_n(original, lower, "lp and lp_lower")
    return _ratio(-lower, -original, "lowercase_ratio")


def reference_ratio(lp_target: TokenScores, lp_reference: TokenScores) -> np.ndarray:
    """Reference-model attack (Carlini et al. 2021, Sec. 6.1, "Small" / "Medium"): the
    reference model's log-perplexity over the target's, ``log PPL_ref(x) / log
    PPL_target(x)``, as the authors' released code ranks (higher = member)."""
    target, reference = _mean_ll(lp_target, "lp_target"), _mean_ll(lp_reference, "lp_reference")
    _same_n(target, reference, "lp_target and lp_reference")
    return _ratio(-reference, -target, "reference_ratio")


def _lowest_k_mean(values: np.ndarray, lengths: np.ndarray, k: float) -> np.ndarray:
    """Mean of the ``max(1, floor(k L))`` smallest scored values of every row (padding
    sorts last as +inf). Tied values are interchangeable: the mean does not depend on
    which of them is taken."""
    if not 0 < k <= 1:
        raise DataError(f"k must be in (0, 1], got {k}")
    mask = np.arange(values.shape[1]) < lengths[:, None]
    ordered = np.sort(np.where(mask, values, np.inf), axis=1)
    count = np.maximum(1, np.floor(k * lengths).astype(np.int64))
    taken = np.arange(values.shape[1]) < count[:, None]
    return np.where(taken, ordered, 0.0).sum(axis=1) / count


def min_k(lp: TokenScores, k: float = 0.2) -> np.ndarray:
    """Min-K% Prob (Shi et al. 2024, "Detecting Pretraining Data from Large Language
    Models", ICLR, Sec. 3: ``Min-K%(x) = (1/E) sum_{x_t in Min-K%(x)} log p(x_t | x_<t)``):
    the mean log-probability of the ``k`` fraction of a sample's tokens with the lowest
    log-probability (higher = member). ``k = 0.2``, the authors' recommended setting. The
    count is ``floor(k L)`` as the released code's ``int(L * k)``, but at least one token
    (the released code averages nothing below ``L = 1/k``)."""
    logprob, lengths, _ = _checked(lp)
    return _lowest_k_mean(logprob, lengths, k)


def min_k_plus_plus(lp: TokenLogProbs, k: float = 0.2) -> np.ndarray:
    """Min-K%++ (Zhang et al. 2024, "Min-K%++: Improved Baseline for Detecting
    Pre-Training Data from Large Language Models", Eq. 2-3): the token score
    ``(log p(x_t | x_<t) - mu_t) / sigma_t`` with ``mu_t, sigma_t^2`` the mean and
    variance of ``log p(z | x_<t)`` over the model's next-token distribution, averaged
    over the lowest ``k`` fraction of tokens, counted as in :func:`min_k` (higher =
    member). ``k = 0.2``, as for Min-K%. Where ``sigma_t = 0`` the distribution is
    a point mass on ``x_t`` (any other token has log-probability ``-inf``, refused), so
    ``log p = mu_t`` and the token scores 0 (the released code divides 0 by 0)."""
    if not isinstance(lp, TokenLogProbs):
        raise DataError("min_k_plus_plus needs TokenLogProbs (the means and variances too)")
    logprob, lengths, mask = _checked(lp)
    mean, var = np.asarray(lp.mean, np.float64), np.asarray(lp.var, np.float64)
    if mean.shape != logprob.shape or var.shape != logprob.shape:
        raise DataError(f"mean and var must be {logprob.shape}, got {mean.shape}, {var.shape}")
    if not (np.isfinite(mean[mask]).all() and np.isfinite(var[mask]).all()):
        raise DataError("the scored means or variances hold NaN or inf")
    if (var[mask] < 0).any():
        raise DataError("the scored variances must be non-negative")
    sigma = np.sqrt(np.where(mask, var, 0.0))
    z = np.divide(logprob - mean, sigma, out=np.zeros_like(sigma), where=sigma > 0)
    return _lowest_k_mean(z, lengths, k)


def recall_score(lp_with_prefix: TokenScores, lp_without: TokenScores) -> np.ndarray:
    """ReCaLL (Xie et al. 2024, "ReCaLL: Membership Inference via Relative Conditional
    Log-Likelihoods", EMNLP, Sec. 3, the ReCaLL score ``LL(x | P) / LL(x)``): the mean
    log-likelihood of the sample's tokens after a non-member prefix ``P`` over that
    without it (both negative). Members' log-likelihood drops more under a non-member
    prefix (the paper's finding), so their ratio is larger: higher = member.
    ``lp_with_prefix`` holds only the sample's own tokens, scored after ``P``."""
    conditional = _mean_ll(lp_with_prefix, "lp_with_prefix")
    unconditional = _mean_ll(lp_without, "lp_without")
    _same_n(conditional, unconditional, "lp_with_prefix and lp_without")
    return _ratio(-conditional, -unconditional, "recall_score")


def sequence_lira(
    target_scores: np.ndarray,
    ref_scores: np.ndarray,
    ref_in: np.ndarray,
    online: bool = True,
    variance: Literal["auto", "global", "per_example"] = "auto",
) -> np.ndarray:
    """LiRA (Carlini et al. 2022, "Membership Inference Attacks From First Principles",
    S&P, Algorithm 1) on a sequence-level score (e.g. :func:`loss_score`) of the target
    ``(n,)`` and of ``R`` reference language models ``(R, n)``, with ``ref_in[r, i]`` true
    where sample ``i`` trained reference ``r``. Per sample it fits Gaussians to the IN and
    OUT reference scores and returns the online likelihood ratio, or the offline
    one-sided ``log Pr[Z <= o]`` (Sec. IV-D): exactly :class:`~mialens.attacks.lira.LiRAOnline`
    / :class:`~mialens.attacks.lira.LiRAOffline` on one query, with their variance modes
    (``auto``: per-sample variances once every sample has 32 models per side)."""
    target = np.asarray(target_scores, dtype=np.float64)
    refs, member = np.asarray(ref_scores, dtype=np.float64), np.asarray(ref_in)
    if target.ndim != 1 or refs.ndim != 2 or refs.shape[1] != target.shape[0]:
        raise DataError(
            f"target_scores must be (n,) and ref_scores (R, n), got {target.shape} and {refs.shape}"
        )
    if member.shape != refs.shape or member.dtype != bool:
        raise DataError(
            f"ref_in must be a boolean {refs.shape} array, got {member.dtype} {member.shape}"
        )
    if not (np.isfinite(target).all() and np.isfinite(refs).all()):
        raise DataError("target_scores and ref_scores must be finite")
    attack = (LiRAOnline if online else LiRAOffline)(variance=variance)
    labels = np.zeros(target.shape[0], dtype=np.int64)
    attack.fit(ReferenceSignals(values=refs[:, :, None], member=member, labels=labels))
    return attack.score(TargetSignals(values=target[:, None], labels=labels))
