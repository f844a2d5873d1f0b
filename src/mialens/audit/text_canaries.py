"""The secret-sharer canaries of a text audit (``audit.canaries``) across its target LMs.

Every target LM is ranked on the same seeded uniform sample of ``candidates`` secrets of
the canaries' format (:func:`~mialens.attacks.exposure.candidate_sample`, none an
inserted secret); the log-perplexities of the candidates and canaries are per-token
log-probabilities of the store (:func:`~mialens.signals.token_logprobs.models_token_logprobs`,
cached in each LM's entry, so a rerun runs no LM), and the exposure of each canary is
extrapolated from them (Carlini et al. 2019, Sec. 4.3). :func:`canary_summary` then
gives the per-repetition exposure and its paired differences
(:func:`~mialens.audit.secret_canaries.exposure_by_repetition`) and, for every attack,
the canary TPR at the audit's FPR levels with thresholds set on the natural non-members
(:func:`~mialens.audit.secret_canaries.canary_tpr_at_fpr`).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from itertools import pairwise
from typing import Any

import numpy as np

from mialens.attacks.exposure import candidate_sample, exposures_from_sample
from mialens.audit.secret_canaries import (
    canary_membership,
    canary_tpr_at_fpr,
    exposure_by_repetition,
)
from mialens.audit.text_design import TextAuditSetup
from mialens.audit.text_models import lm_loader
from mialens.data.tokenizers import encode_padded
from mialens.errors import DataError
from mialens.signals.token_logprobs import models_token_logprobs

SCORING_BATCH = 256  # candidates per LM pass (short texts)
BRIEF_FPR = 0.01  # the canary TPR level of the brief, measured whatever the audit's levels


def canary_log_perplexities(setup: TextAuditSetup) -> tuple[np.ndarray, np.ndarray]:
    """``(M, S)`` log-perplexities (nats) of the sampled candidates and ``(M, K)`` of the
    canaries, under every LM (full templated sequences, as in
    :func:`~mialens.attacks.exposure.candidate_log_perplexities`)."""
    record, settings = setup.canaries, setup.config.audit.canaries
    fmt = record.format
    sample = candidate_sample(record, settings.candidates, settings.seed)
    texts = [fmt.text(s) for s in fmt.secrets(sample)] + [c.text for c in record.canaries]
    tokens, lengths = encode_padded(setup.tokenizer, texts, setup.config.model.context)
    stats = models_token_logprobs(
        setup.store,
        setup.keys,
        lm_loader(setup),
        tokens,
        lengths,
        setup.tokenizer.vocab_size,
        SCORING_BATCH,
    )
    mask = np.arange(stats.logprob.shape[2]) < stats.lengths[:, None]
    logppl = -np.where(mask[None], stats.logprob.astype(np.float64), 0.0).sum(axis=2)
    return logppl[:, : sample.size], logppl[:, sample.size :]


def _differences(
    exposure: np.ndarray, trained: np.ndarray, setup: TextAuditSetup
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-repetition exposures and the paired differences of consecutive counts; a
    difference too few targets support is recorded with its reason, not raised."""
    record = setup.canaries
    per_count, _ = exposure_by_repetition(exposure, trained, record, pairs=[])
    differences = []
    for a, b in pairwise(record.repetition_counts):
        try:
            _, (d,) = exposure_by_repetition(exposure, trained, record, pairs=[(a, b)])
            differences.append(asdict(d))
        except DataError as exc:
            differences.append({"smaller": a, "larger": b, "error": str(exc)})
    return [asdict(r) for r in per_count], differences


def _json_safe(value: Any) -> Any:
    """``value`` with every NaN (a count no target trained, say) as None, for JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def canary_summary(setup: TextAuditSetup, scores: dict[str, np.ndarray]) -> dict[str, Any]:
    """The content of canaries.json: the record, every target's exposures, the
    per-repetition exposure with differences, and every attack's canary TPRs."""
    record = setup.canaries
    sample_logppl, canary_logppl = canary_log_perplexities(setup)
    per_target = [
        exposures_from_sample(record, s, c)
        for s, c in zip(sample_logppl, canary_logppl, strict=True)
    ]
    exposure = np.stack([e.exposure for e in per_target])
    ids = setup.dataset.ids[setup.split.pool].astype(str)
    trained = canary_membership(record, ids, setup.keep)
    per_count, differences = _differences(exposure, trained, setup)
    levels = sorted({*setup.config.audit.fpr, BRIEF_FPR}, reverse=True)
    return _json_safe(
        {
            "record": record.to_json(),
            "candidates": {"sample_size": sample_logppl.shape[1], "seed": record.seed},
            "trained": trained.tolist(),
            "exposures": [e.to_json() for e in per_target],
            "by_repetition": per_count,
            "differences": differences,
            "tpr_at_fpr": {
                name: [asdict(r) for r in canary_tpr_at_fpr(s, setup.keep, ids, record, levels)]
                for name, s in scores.items()
            },
            "count": len(record.canaries),
            "copies": int((~setup.natural).sum()),
            "fpr_levels": list(levels),
        }
    )


def canary_brief(summary: dict[str, Any], attack: str = "lira_online") -> dict[str, Any]:
    """What metrics.json and the report say of the canaries: per repetition count the mean
    exposure trained vs untrained and ``attack``'s canary TPR at each FPR level (the
    first attack when ``attack`` is absent), the differences, and the file."""
    rates = summary["tpr_at_fpr"]
    attack = attack if attack in rates else next(iter(rates))
    rows = []
    for entry in summary["by_repetition"]:
        r = entry["repetitions"]
        at = next(x for x in rates[attack] if x["repetitions"] == r and x["level"] == BRIEF_FPR)
        rows.append(
            {
                "repetitions": r,
                "canaries": entry["canaries"],
                "exposure_in": entry["in_mean"],
                "exposure_out": entry["out_mean"],
                "tpr_at_1%": at["tpr"],
                "tpr_at_1%_per_target_ci": [at["ci_low"], at["ci_high"]],
                "share_of_targets_at_1%": at["per_canary"],
            }
        )
    return {
        "file": "canaries.json",
        "count": summary["count"],
        "copies": summary["copies"],
        "attack": attack,
        "by_repetition": rows,
        "differences": [
            {k: d[k] for k in ("smaller", "larger", "mean", "ci_low", "ci_high", "n")}
            if "error" not in d
            else d
            for d in summary["differences"]
        ],
        "in_headline_metrics": False,
    }
