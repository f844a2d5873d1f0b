"""The leakage analysis of a text audit: which texts (verses) leak, and what predicts it.

:func:`analyze_text` takes a text audit's :class:`~mialens.audit.results.AuditResult`,
rebuilds its design, reads the LMs' cached per-token log-probabilities from the model
store, and computes the per-sample vulnerability of
:mod:`~mialens.analysis.vulnerability` (the LiRA separation on the LOSS signal, each
LM's mean token log-probability of the text), the measures of
:mod:`~mialens.analysis.text_outliers` and their link statistics
(:func:`~mialens.analysis.significance.link_statistics`: Spearman rho, AUC for the
vulnerable sets with DeLong intervals, Holm-adjusted p-values).

The canaries: the secret-sharer canaries an ``audit.canaries`` section inserted are not
pool samples of the result; the audit measured them into ``canaries.json``
(:func:`~mialens.audit.text_canaries.canary_summary`), and :func:`inserted_canaries` puts
its numbers (no recomputation) next to the natural texts' TPR of the same attack. Pool
samples whose ids start with ``canary-`` (a supplied data set's own canaries) get the
rank summary of :func:`~mialens.analysis.summary.canary_summary`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mialens.analysis.explain import choose_attack
from mialens.analysis.settings import AnalysisSettings
from mialens.analysis.significance import link_statistics
from mialens.analysis.summary import (
    canary_summary,
    json_safe,
    scored_by_group,
    vulnerability_summary,
)
from mialens.analysis.text_outliers import (
    TEXT_GROUPS,
    out_token_loss,
    text_measure_group,
    text_measures,
)
from mialens.analysis.vulnerability import Vulnerability, per_sample_vulnerability
from mialens.audit.results import AuditResult
from mialens.audit.text_design import TextAuditSetup, prepare_text_audit
from mialens.audit.text_models import text_signals
from mialens.audit.text_settings import TextAuditSpec
from mialens.data.secret_canaries import DEFAULT_NAME
from mialens.errors import CacheError, DataError
from mialens.metrics.leakage import fpr_key

SNIPPET = 100  # characters of each text in the table and the page
TOP_LISTED = 20  # most vulnerable texts in the summary and on the page


@dataclass
class TextAnalysis:
    """A text audit's analysis: the per-sample ``table`` (``analysis/samples.csv``) and
    the ``summary`` (``analysis/summary.json``, JSON-safe)."""

    table: dict[str, np.ndarray]
    summary: dict[str, Any]


def _check(result: AuditResult, setup: TextAuditSetup) -> None:
    natural = setup.natural
    ids = setup.dataset.ids[setup.split.pool[natural]].astype(str)
    if not np.array_equal(result.sample_ids.astype(str), ids) or not np.array_equal(
        result.members, setup.keep[:, natural]
    ):
        raise DataError(
            "this text audit result does not match the design its configuration rebuilds "
            "(was the text changed, or were texts such as canaries added to the pool?); "
            "pass the audit's setup to analyze_text"
        )
    missing = [k for k, key in enumerate(setup.keys) if not setup.store.has(key)]
    if missing:
        raise CacheError(
            f"{len(missing)} of {len(setup.keys)} LMs of this audit are not in the model cache "
            f"{setup.store.root}: point MIALENS_CACHE_DIR (or audit.cache_dir) at the run's "
            "cache, or re-run `mialens audit` with this run's configuration"
        )


def _sets(vuln: Vulnerability, settings: AnalysisSettings) -> dict[str, np.ndarray]:
    sets = {fpr_key(lv): vuln.levels[lv].vulnerable for lv in settings.fpr}
    sets["top"] = vuln.top(settings.top_fraction)
    return sets


def primary_set(stats: dict[str, Any], settings: AnalysisSettings) -> str:
    """The most stringent vulnerable set with statistics (lowest FPR first, then top)."""
    for key in [fpr_key(lv) for lv in sorted(settings.fpr)] + ["top"]:
        if "measures" in stats["sets"].get(key, {}):
            return key
    return "top"


def group_headline(stats: dict[str, Any], primary: str) -> dict[str, Any]:
    """Per group of :data:`TEXT_GROUPS`, the measure with the highest AUC for the primary
    vulnerable set, its DeLong interval and Holm-adjusted p (over all measures), and
    whether it predicts the set (interval above 0.5 and ``p_holm < 0.05``)."""
    entries = stats["sets"].get(primary, {}).get("measures", {})
    groups: dict[str, Any] = {}
    for group, scored in scored_by_group(entries, TEXT_GROUPS, text_measure_group).items():
        if not scored:
            groups[group] = None
            continue
        best = max(scored, key=scored.get)
        e = entries[best]
        predicts = e["ci_low"] > 0.5 and e.get("p_holm") is not None and e["p_holm"] < 0.05
        groups[group] = {
            "measure": best,
            "auc": e["auc"],
            "ci_low": e["ci_low"],
            "ci_high": e["ci_high"],
            "p_holm": e.get("p_holm"),
            "spearman_rho": stats["spearman"][best]["rho"],
            "spearman_p_holm": stats["spearman"][best].get("p_holm"),
            "predicts": bool(predicts),
        }
    return {"set": primary, "groups": groups}


def _measures(setup: TextAuditSetup) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every measure of the natural pool samples (canary copies, reported in
    canaries.json, left out as from the headline metrics), and each LM's LOSS signal
    ``(M, n)`` (mean token log-probability) for the LiRA separation."""
    signals, _ = text_signals(setup)
    natural = setup.natural
    logprob, lengths = signals.plain.logprob[:, natural], signals.plain.lengths[natural]
    pool = setup.split.pool[natural]
    texts = [setup.dataset.texts[i] for i in pool]
    measures = text_measures(texts, setup.dataset.groups[pool], lengths)
    measures["out_token_loss"] = out_token_loss(logprob, lengths, setup.keep[:, natural])
    mask = np.arange(logprob.shape[2]) < lengths[:, None]
    phi = np.where(mask, logprob, 0.0).sum(axis=2) / lengths
    return measures, phi


def _table(
    result: AuditResult,
    texts: list[str],
    vuln: Vulnerability,
    canary: np.ndarray,
    sets: dict[str, np.ndarray],
    measures: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    snippets = [t if len(t) <= SNIPPET else t[: SNIPPET - 1] + "…" for t in texts]
    table: dict[str, np.ndarray] = {
        "sample_id": result.sample_ids.astype(str),
        "text": np.array(snippets, dtype=object),
        "group": np.asarray(result.labels, dtype=np.int64),
        "canary": canary.astype(np.int64),
        "rank": vuln.rank,
        "vulnerability": vuln.score,
        "vulnerability_low": vuln.low,
        "vulnerability_high": vuln.high,
        "vulnerability_out": vuln.out_control,
        "vulnerability_tail": vuln.tail,
        "in_targets": vuln.n_in.astype(np.int64),
        "separation": vuln.separation,
    }
    for lv, r in vuln.levels.items():
        key = fpr_key(lv)
        table[f"tpr@{key}"] = r.tpr
        table[f"q@{key}"] = r.q_value
        table[f"vulnerable@{key}"] = r.vulnerable.astype(np.int64)
    table["top"] = sets["top"].astype(np.int64)
    table.update(measures)
    return table


def _top_rows(table: dict[str, np.ndarray], count: int) -> list[dict[str, Any]]:
    order = np.argsort(table["rank"])[:count]
    return [{k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in table.items()}
            for i in order]  # fmt: skip


def _level_entry(rates: list[dict[str, Any]], repetitions: int, level: float) -> dict | None:
    """canaries.json's canary rates at one repetition count and FPR level (None if the
    audit did not measure that level)."""
    for r in rates:
        if r["repetitions"] == repetitions and np.isclose(r["level"], level, rtol=1e-9):
            keys = ("tpr", "n_trained", "tpr_mean", "ci_low", "ci_high", "out_canary_fpr")
            return {k: r[k] for k in keys} | {"resolved": bool(r["resolved"])}
    return None


def _natural_tpr(result: AuditResult, attack: str, level: float) -> dict | None:
    """The natural texts' TPR of ``attack`` at ``level``: mean over targets with its
    Student-t interval, from the run's metrics (None if not measured)."""
    at = result.metrics[attack].tpr_at_fpr.get(float(level)) if attack in result.metrics else None
    if at is None:
        return None
    return {"mean": at.mean, "ci_low": at.ci_low, "ci_high": at.ci_high, "valid": at.valid}


def inserted_canaries(
    doc: dict[str, Any], result: AuditResult, attack: str, levels: list[float]
) -> dict[str, Any]:
    """The summary's ``canaries`` entry from canaries.json's content ``doc``: per repetition
    count the canaries, their mean exposure on the targets that trained them and on the
    others (bits), and ``attack``'s canary TPR at each of ``levels`` (share of (canary,
    trained target) pairs above each target's threshold set on natural non-members, with
    the 95% Student-t interval over targets of the per-target TPR); the natural texts' TPR
    of the same attack; ``attack`` falls back to canaries.json's first attack if absent."""
    rates = doc["tpr_at_fpr"]
    used = attack if attack in rates else next(iter(rates))
    rows = [
        {
            "repetitions": e["repetitions"],
            "canaries": e["canaries"],
            "exposure_trained": e["in_mean"],
            "exposure_untrained": e["out_mean"],
            "tpr": {fpr_key(lv): _level_entry(rates[used], e["repetitions"], lv) for lv in levels},
        }
        for e in doc["by_repetition"]
    ]
    fallback = None if used == attack else f"{attack} is not in canaries.json; showing {used}"
    return {
        "source": "canaries.json",
        "count": doc["count"],
        "copies": doc["copies"],
        "attack": used,
        "attack_fallback": fallback,
        "by_repetition": rows,
        "natural_tpr": {fpr_key(lv): _natural_tpr(result, used, lv) for lv in levels},
        "natural_texts": int(result.sample_ids.size),
    }


def _canaries_entry(
    result: AuditResult,
    pool: dict[str, Any] | None,
    inserted: dict[str, Any] | None,
    attack: str,
    levels: list[float],
) -> dict[str, Any]:
    """The summary's ``canaries``: from canaries.json (with the pool canaries' ranks as
    ``pool`` if any), else from the pool, else ``source`` None and whether the
    configuration inserted canaries."""
    if inserted is not None:
        return {**inserted_canaries(inserted, result, attack, levels), "pool": pool}
    if pool is not None:
        return {"source": "pool", **pool}
    return {
        "source": None,
        "inserted": (result.config.get("audit") or {}).get("canaries") is not None,
    }


def analyze_text(
    result: AuditResult,
    settings: AnalysisSettings | None = None,
    setup: TextAuditSetup | None = None,
    inserted: dict[str, Any] | None = None,
) -> TextAnalysis:
    """The leakage analysis of a text audit (module docstring) on its natural pool
    samples; ``setup`` is the audit's design when it added texts to the pool through
    ``extra_pool``, else it is rebuilt from the recorded configuration (which holds
    ``audit.canaries``); ``inserted`` is the content of the run's canaries.json."""
    settings = settings or AnalysisSettings()
    setup = setup or prepare_text_audit(TextAuditSpec.model_validate(result.config))
    _check(result, setup)
    attack, reason = choose_attack(result, settings.attack)
    measures, phi = _measures(setup)
    vuln = per_sample_vulnerability(
        result.scores[attack],
        result.members,
        phi,
        settings.fpr,
        settings.fdr,
        tail_fraction=settings.tail_fraction,
    )
    sets = _sets(vuln, settings)
    canary = np.char.startswith(result.sample_ids.astype(str), f"{DEFAULT_NAME}-")
    no_classes = np.zeros(canary.size, dtype=np.int64)  # within_class = overall
    stats = link_statistics(vuln.score, measures, sets, no_classes)
    primary = primary_set(stats, settings)
    texts = [setup.dataset.texts[i] for i in setup.split.pool[setup.natural]]
    table = _table(result, texts, vuln, canary, sets, measures)
    pool = canary_summary(vuln, canary, sets, settings.top_fraction) if canary.any() else None
    summary: dict[str, Any] = {
        "kind": "text",
        "dataset": setup.dataset.name,
        "attack": attack,
        "attack_choice": reason,
        "settings": settings.model_dump(mode="json"),
        "samples": int(canary.size),
        "targets": int(setup.keep.shape[0]),
        "vulnerability": vulnerability_summary(vuln, setup.keep, sets),
        "headline": group_headline(stats, primary),
        "group_names": TEXT_GROUPS,
        "statistics": {k: v for k, v in stats.items() if k != "within_class"},
        "top": _top_rows(table, TOP_LISTED),
        "canaries": _canaries_entry(result, pool, inserted, attack, settings.fpr),
    }
    return TextAnalysis(table, json_safe(summary))
