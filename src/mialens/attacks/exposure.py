"""Exposure of a model's secret-sharer canaries (Carlini et al. 2019, Sec. 4).

:func:`candidate_log_perplexities` scores templated texts with a causal language model:
each text's log-perplexity is that of the FULL templated sequence (the start token, then
the template with the secret in its slot), in nats, from
:func:`~mialens.signals.token_logprobs.compute_token_logprobs`. The full sequence is the
paper's log-perplexity of a canary and needs no alignment of tokens to the secret (a BPE
token may straddle the template and the secret); the template's tokens before the secret
add the same amount to every candidate, so the ranks do not depend on them, while tokens
after the secret do depend on it and are scored as the paper scores them.

Every canary of a :class:`~mialens.data.secret_canaries.CanaryRecord` is ranked against
the candidates of its format that are not inserted secrets (the other canaries' secrets
are known to the auditor, not random alternatives, and each would push the canary down
one rank when trained): :func:`exact_canary_exposures` enumerates the whole space (for
spaces up to ``max_candidates``, e.g. 4 digits), :func:`extrapolated_canary_exposures`
fits the skew-normal of Sec. 4.3 to a seeded uniform sample of them (for spaces of at
least ``10**6``). Candidates are scored afresh for each model, not cached.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from torch import nn

from mialens.data.secret_canaries import DEFAULT_SAMPLE, EXTRAPOLATION_MIN_SPACE, CanaryRecord
from mialens.data.tokenizers import Tokenizer, encode_padded
from mialens.errors import ConfigError, DataError
from mialens.metrics.exposure import (
    ExactExposure,
    ExtrapolatedExposure,
    exact_exposure,
    extrapolated_exposure,
)
from mialens.seeding import rng
from mialens.signals.token_logprobs import compute_token_logprobs

MAX_ENUMERATED = 10**5  # the largest space exact_canary_exposures enumerates by default
_CHUNK = 4096  # candidates per call of compute_token_logprobs (bounds its memory)


def candidate_log_perplexities(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    max_tokens: int,
    batch_size: int = 256,
) -> np.ndarray:
    """``-sum_t log p(x_t | x_<t)`` of every text's full token sequence (nats, float64
    ``(n,)``), ``batch_size`` texts per model pass. A text longer than ``max_tokens``
    (start token included) is refused rather than truncated: truncation could cut off
    the secret."""
    if not texts:
        raise DataError("no candidate texts to score")
    longest = max(len(tokenizer.encode(t)) for t in texts) + 1
    if longest > max_tokens:
        raise DataError(
            f"a candidate text takes {longest} tokens with its start token, more than "
            f"max_tokens={max_tokens}; raise max_tokens (and the model's context)"
        )
    out = np.empty(len(texts), dtype=np.float64)
    for start in range(0, len(texts), _CHUNK):
        tokens, lengths = encode_padded(tokenizer, texts[start : start + _CHUNK], max_tokens)
        lp = compute_token_logprobs(model, tokens, lengths, tokenizer.vocab_size, batch_size)
        scored = np.where(lp.mask, lp.logprob.astype(np.float64), 0.0)
        out[start : start + len(lengths)] = -scored.sum(axis=1)
    return out


@dataclass(frozen=True)
class CanaryExposures:
    """Exposure of every canary of a record under one model, in record order:
    ``method`` says how (with its ``detail``), ``space_bits`` is ``log2`` of the
    candidates each canary was ranked among (``|R|`` less the other inserted secrets)."""

    canary_ids: tuple[str, ...]
    repetitions: np.ndarray
    exposure: np.ndarray
    log_perplexity: np.ndarray
    method: Literal["exact", "extrapolated"]
    space_bits: float
    detail: ExactExposure | ExtrapolatedExposure

    def to_json(self) -> dict:
        flags = (
            {
                "rank": self.detail.rank.tolist(),
                "best_rank": self.detail.best_rank.tolist(),
                "tied": self.detail.tied.tolist(),
            }
            if isinstance(self.detail, ExactExposure)
            else {
                "beyond_sample": self.detail.beyond_sample.tolist(),
                "fit": {
                    "shape": self.detail.shape,
                    "loc": self.detail.loc,
                    "scale": self.detail.scale,
                    "sample_size": self.detail.sample_size,
                    "ks_statistic": self.detail.ks_statistic,
                },
            }
        )
        return {
            "method": self.method,
            "space_bits": self.space_bits,
            "canary_ids": list(self.canary_ids),
            "repetitions": self.repetitions.tolist(),
            "exposure": self.exposure.tolist(),
            "log_perplexity": self.log_perplexity.tolist(),
            **flags,
        }


def _distinct_secrets(record: CanaryRecord) -> np.ndarray:
    index = record.secret_indices
    if np.unique(index).size != index.size:
        raise DataError("the record's canaries must have distinct secrets")
    return index


def exact_canary_exposures(
    model: nn.Module,
    tokenizer: Tokenizer,
    record: CanaryRecord,
    max_tokens: int,
    batch_size: int = 256,
    max_candidates: int = MAX_ENUMERATED,
) -> CanaryExposures:
    """Exact exposure of every canary under ``model``: the whole candidate space scored
    once (:func:`space_texts`), then :func:`exposures_from_space`."""
    if record.format.space_size > max_candidates:
        raise ConfigError(
            f"enumerating {record.format.space_size:,} candidates exceeds max_candidates="
            f"{max_candidates:,}; use extrapolated_canary_exposures for large spaces"
        )
    logppl = candidate_log_perplexities(
        model, tokenizer, space_texts(record), max_tokens, batch_size
    )
    return exposures_from_space(record, logppl)


def space_texts(record: CanaryRecord) -> list[str]:
    """The templated text of every candidate of the record's format, by candidate index."""
    fmt = record.format
    return [fmt.text(s) for s in fmt.secrets(np.arange(fmt.space_size))]


def exposures_from_space(record: CanaryRecord, space_logppl: object) -> CanaryExposures:
    """Exact exposures from the log-perplexity of every candidate, by candidate index:
    each canary ranked among itself and the candidates that are not inserted secrets."""
    logppl = np.asarray(space_logppl, dtype=np.float64)
    if logppl.shape != (record.format.space_size,):
        raise DataError(
            f"space_logppl must hold all {record.format.space_size:,} candidates, got "
            f"shape {logppl.shape}"
        )
    secrets = _distinct_secrets(record)
    others = np.ones(logppl.size, dtype=bool)
    others[secrets] = False
    detail = exact_exposure(logppl[secrets], logppl[others])
    return _exposures(record, logppl[secrets], "exact", detail, detail.space)


def candidate_sample(record: CanaryRecord, size: int, seed: int) -> np.ndarray:
    """``size`` distinct candidate indices drawn uniformly from the format's space less
    the inserted secrets, from ``seed`` alone (so every model is ranked against the same
    candidates)."""
    secrets = _distinct_secrets(record)
    available = record.format.space_size - secrets.size
    if not 1 <= size <= available:
        raise ConfigError(f"the candidate sample must hold 1 to {available:,}, got {size:,}")
    drawn = rng(seed, "exposure-candidates").choice(
        record.format.space_size, size=size + secrets.size, replace=False
    )
    return drawn[~np.isin(drawn, secrets)][:size]


def _check_extrapolable(record: CanaryRecord) -> None:
    if record.format.space_size < EXTRAPOLATION_MIN_SPACE:
        raise ConfigError(
            f"the extrapolated exposure needs a candidate space of at least "
            f"{EXTRAPOLATION_MIN_SPACE:,}; this format has {record.format.space_size:,}: use "
            "exact_canary_exposures"
        )


def extrapolated_canary_exposures(
    model: nn.Module,
    tokenizer: Tokenizer,
    record: CanaryRecord,
    max_tokens: int,
    sample_size: int = DEFAULT_SAMPLE,
    seed: int = 0,
    batch_size: int = 256,
) -> CanaryExposures:
    """Extrapolated exposure (Sec. 4.3) of every canary: a skew-normal fitted to the
    log-perplexities of :func:`candidate_sample` candidates. Refused for spaces under
    ``10**6`` (an exact-only format): measure those exactly."""
    fmt = record.format
    _check_extrapolable(record)
    sample = candidate_sample(record, sample_size, seed)
    texts = [fmt.text(s) for s in fmt.secrets(sample)] + [c.text for c in record.canaries]
    logppl = candidate_log_perplexities(model, tokenizer, texts, max_tokens, batch_size)
    return exposures_from_sample(record, logppl[: sample.size], logppl[sample.size :])


def exposures_from_sample(
    record: CanaryRecord, sample_logppl: object, canary_logppl: object
) -> CanaryExposures:
    """Extrapolated exposures from the log-perplexities of sampled candidates (none an
    inserted secret) and of the record's canaries, in record order (a space of
    ``10**6`` or more)."""
    _check_extrapolable(record)
    canary = np.asarray(canary_logppl, dtype=np.float64)
    if canary.shape != (len(record.canaries),):
        raise DataError(f"canary_logppl must hold {len(record.canaries)} values, one a canary")
    detail = extrapolated_exposure(canary, sample_logppl)
    space = record.format.space_size - len(record.canaries) + 1
    return _exposures(record, canary, "extrapolated", detail, space)


def _exposures(
    record: CanaryRecord,
    logppl: np.ndarray,
    method: Literal["exact", "extrapolated"],
    detail: ExactExposure | ExtrapolatedExposure,
    space: int,
) -> CanaryExposures:
    return CanaryExposures(
        canary_ids=tuple(c.canary_id for c in record.canaries),
        repetitions=np.array([c.repetitions for c in record.canaries], dtype=np.int64),
        exposure=detail.exposure,
        log_perplexity=logppl,
        method=method,
        space_bits=math.log2(space),
        detail=detail,
    )
