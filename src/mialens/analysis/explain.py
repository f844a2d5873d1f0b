"""The leakage analysis of an audit: per-sample vulnerability, outlierness and their link.

:func:`analyze` takes an :class:`~mialens.audit.results.AuditResult` (of
:func:`~mialens.workflows.audit.run_audit`, or read back from a run folder with
:func:`~mialens.workflows.outputs.load_result`), rebuilds the audit's design from its
configuration, reads the models' cached logits and weights from the model store, and
returns an :class:`Analysis` (:func:`~mialens.workflows.outputs.write_analysis` writes
it into the run folder).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mialens.analysis.epochs import epoch_logits
from mialens.analysis.outliers import (
    MEMBERSHIP_DEPENDENT,
    geometric_measures,
    mean_over_out_models,
    output_measures,
)
from mialens.analysis.settings import AnalysisSettings
from mialens.analysis.significance import auc_test, link_statistics, per_class
from mialens.analysis.summary import AnalysisSummary, summarize_analysis
from mialens.analysis.vulnerability import (
    Vulnerability,
    per_sample_vulnerability,
)
from mialens.audit.design import AuditSetup, prepare_audit
from mialens.audit.results import AuditResult
from mialens.audit.settings import AuditSpec
from mialens.audit.training_plan import load_models, models_logits
from mialens.data.dataset import original_labels
from mialens.errors import CacheError, ConfigError, DataError
from mialens.metrics.leakage import fpr_key
from mialens.models.store import spec_key
from mialens.signals.statistics import rescaled_logit

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    """One audit's leakage analysis: the per-sample ``table`` and the ``summary`` (as
    written to ``analysis/``), and what they were computed from, for the figures."""

    table: dict[str, np.ndarray]
    summary: AnalysisSummary
    setup: AuditSetup
    settings: AnalysisSettings
    vulnerability: Vulnerability
    measures: dict[str, np.ndarray]
    features: list[np.ndarray] | None
    statistics: dict[str, Any]
    sets: dict[str, np.ndarray]
    canary: np.ndarray


def choose_attack(result: AuditResult, name: str | None) -> tuple[str, str]:
    """The attack that defines vulnerability, and why it was chosen."""
    if name is not None:
        if name not in result.scores:
            raise ConfigError(
                f"analysis.attack {name!r} is not one of this audit's attacks: "
                f"{', '.join(result.scores)}"
            )
        return name, "configured"
    metrics = result.metrics
    resolved = [lv for lv in result.fpr_levels if all(m.at(lv).resolved for m in metrics.values())]
    if not resolved:
        best = max(metrics, key=lambda n: metrics[n].auc.mean)
        return best, "highest mean AUC (no FPR level resolved by every target)"
    level = min(resolved)
    best = max(metrics, key=lambda n: (metrics[n].at(level).mean, metrics[n].auc.mean))
    return (
        best,
        f"highest mean TPR at FPR {fpr_key(level)}, the lowest level every target resolves",
    )


def _check_matches(result: AuditResult, setup: AuditSetup) -> None:
    ids = setup.dataset.ids[setup.split.pool].astype(str)
    k = setup.config.audit.num_models
    if (
        result.members.shape != setup.keep.shape
        or not np.array_equal(result.sample_ids.astype(str), ids)
        or not np.array_equal(result.members, setup.keep)
        or list(result.target_models) != list(range(k))
    ):
        raise DataError(
            "this audit result does not match the design its configuration rebuilds (was the "
            "data set changed, or is it not a result of run_audit?); the analysis needs an "
            "audit run by mialens audit"
        )


def _check_cached(result: AuditResult, setup: AuditSetup) -> None:
    plan, store = setup.plan, setup.store
    keys = [spec_key(plan.spec(k)) for k in range(len(plan.seeds))]
    missing = [k for k, key in enumerate(keys) if not store.has(key)]
    if missing:
        recorded = result.design.get("cache_dir")
        where = f" The run recorded its cache at {recorded}." if recorded else ""
        if [r.get("key") for r in result.training] not in ([], keys):
            where += (
                " This mialens derives other model keys than the run recorded: the training "
                "code or its defaults changed since the audit."
            )
        raise CacheError(
            f"{len(missing)} of {len(plan.seeds)} models of this audit are not in the model "
            f"cache {store.root}.{where} Point MIALENS_CACHE_DIR (or audit.cache_dir) at the "
            "run's cache, or re-run `mialens audit` with this run's configuration to rebuild "
            "the models (training is deterministic, so the scores do not change)."
        )


def _pool_logits(setup: AuditSetup) -> np.ndarray:
    settings = setup.config.audit
    logits, _ = models_logits(
        setup.plan,
        setup.store,
        setup.query_positions,
        setup.transforms,
        device=settings.device,
        executor=setup.config.executor,
    )
    return logits[:, : len(setup.split.pool)]


def _features(setup: AuditSetup, models: list[int]) -> list[np.ndarray]:
    """Penultimate-layer features of the chosen models on the pool."""
    device = setup.config.audit.device
    targets = load_models(setup.plan, setup.store, device, setup.config.executor)
    x = setup.dataset.x[setup.split.pool]
    out = []
    with torch.no_grad():
        for k in models:
            module = getattr(targets[k], "module", None)
            if not callable(getattr(module, "features", None)):
                raise ConfigError(
                    "analysis.spaces 'features' needs a network's penultimate-layer features "
                    "(a features(x) method, which model.factory's module may add); drop "
                    "'features' from analysis.spaces"
                )
            module.eval()
            parts = [
                module.features(torch.as_tensor(x[i : i + 2048], device=device)).float().cpu()
                for i in range(0, len(x), 2048)
            ]
            out.append(torch.cat(parts).numpy())
    return out


def _measures(
    setup: AuditSetup, logits: np.ndarray, settings: AnalysisSettings
) -> tuple[dict[str, np.ndarray], list[np.ndarray] | None]:
    """Every outlierness measure, and the features of the chosen models (if computed)."""
    seed = setup.config.audit.seed
    labels = setup.dataset.y[setup.split.pool]
    keep = setup.keep
    measures = {}
    geo = {"neighbors": settings.neighbors, "trees": settings.iforest_trees, "seed": seed}
    if "input" in settings.spaces:
        x = setup.dataset.x[setup.split.pool]
        for name, v in geometric_measures(x, labels, **geo).items():
            measures[f"input_{name}"] = v
    k_models = keep.shape[0]
    chosen = list(range(min(settings.feature_models or k_models, k_models)))
    features = None
    if "features" in settings.spaces:
        features = _features(setup, chosen)
        per_model = [geometric_measures(f, labels, **geo) for f in features]
        for name, v in mean_over_out_models(per_model, ~keep[chosen]).items():
            measures[f"features_{name}"] = v
    if "logits" in settings.spaces:
        z = logits[chosen, :, 0, :].astype(np.float64)
        z = z - z.mean(axis=-1, keepdims=True)  # softmax ignores a common shift
        per_model = [geometric_measures(zk, labels, **geo) for zk in z]
        for name, v in mean_over_out_models(per_model, ~keep[chosen]).items():
            measures[f"logits_{name}"] = v
    measures.update(output_measures(logits[:, :, 0, :], labels, keep))
    return measures, features


def _sets(vuln: Vulnerability, settings: AnalysisSettings) -> dict[str, np.ndarray]:
    sets = {fpr_key(lv): vuln.levels[lv].vulnerable for lv in settings.fpr}
    sets["top"] = vuln.top(settings.top_fraction)
    return sets


def _primary_set(stats: dict[str, Any], settings: AnalysisSettings) -> str:
    """The most stringent vulnerable set with statistics (lowest FPR first, then top)."""
    for key in [fpr_key(lv) for lv in sorted(settings.fpr)] + ["top"]:
        if "measures" in stats["sets"].get(key, {}):
            return key
    return "top"


def _epochs_summary(
    setup: AuditSetup, logits: np.ndarray, vulnerable: np.ndarray, settings: AnalysisSettings
) -> list[dict[str, Any]]:
    """Per epoch: quantiles of the LiRA signal of members, non-members and vulnerable
    members of the retrained models, and its AUC (the reference-free LOSS-type attack)."""
    labels = setup.dataset.y[setup.split.pool]
    keep = setup.keep
    per_model = []
    for k in range(min(settings.epoch_models, keep.shape[0])):
        per_epoch = epoch_logits(setup, k, logits[k, :, 0, :], setup.config.audit.device)
        per_model.append(rescaled_logit(per_epoch, labels[None, :]))  # (E, N)
    n_epochs = min(p.shape[0] for p in per_model)
    rows = []
    for e in range(n_epochs):
        phi = [p[e] for p in per_model]
        groups = {
            "members": np.concatenate([p[keep[k]] for k, p in enumerate(phi)]),
            "nonmembers": np.concatenate([p[~keep[k]] for k, p in enumerate(phi)]),
            "vulnerable_members": np.concatenate(
                [p[keep[k] & vulnerable] for k, p in enumerate(phi)]
            ),
        }
        rows.append(
            {
                "epoch": e + 1,
                "auc": float(np.mean([auc_test(p, keep[k])["auc"] for k, p in enumerate(phi)])),
                "quantiles": {
                    g: (np.quantile(v, [0.1, 0.5, 0.9]).tolist() if v.size else None)
                    for g, v in groups.items()
                },
            }
        )
    return rows


def analyze(
    result: AuditResult,
    settings: AnalysisSettings | None = None,
    setup: AuditSetup | None = None,
    logits: np.ndarray | None = None,
) -> Analysis:
    """The leakage analysis of an audit run by :func:`~mialens.workflows.audit.run_audit`.

    ``settings`` default to the ``analysis:`` section of the audit's configuration.
    ``setup`` and ``logits`` (``(K, pool, queries, classes)``) are what the audit already
    holds; without them they are rebuilt from the configuration and the model cache.
    """
    if settings is None:
        settings = AnalysisSettings.model_validate(result.config.get("analysis") or {})
    setup = setup if setup is not None else prepare_audit(AuditSpec.of(result.config))
    _check_matches(result, setup)
    if logits is None or "features" in settings.spaces or settings.epoch_models:
        _check_cached(result, setup)
    if logits is None:
        logits = _pool_logits(setup)
    attack, reason = choose_attack(result, settings.attack)
    labels = setup.dataset.y[setup.split.pool]
    keep = setup.keep
    vuln = _vulnerability(result.scores[attack], setup, logits, settings)
    log.info("analysis: computing outlierness measures in %s", ", ".join(settings.spaces))
    measures, features = _measures(setup, logits, settings)
    canary = setup.canaries if setup.canaries is not None else np.zeros(keep.shape[1], bool)
    sets = _sets(vuln, settings)
    stats, natural_stats = _link(vuln, measures, sets, labels, canary)
    class_names = list(setup.dataset.class_names or [str(c) for c in range(logits.shape[-1])])
    primary = _primary_set(stats, settings)
    table = _table(result, vuln, labels, canary, sets, measures)
    summary = summarize_analysis(
        result,
        attack=attack,
        attack_choice=reason,
        dataset=setup.dataset.name,
        settings=settings,
        vuln=vuln,
        keep=keep,
        sets=sets,
        measures=measures,
        statistics=(
            stats,
            natural_stats,
            per_class(vuln.score, measures, sets, labels, class_names),
        ),
        primary=primary,
        canary=canary,
        table=table,
        epochs=(
            _epochs_summary(setup, logits, sets[primary], settings)
            if settings.epoch_models
            else None
        ),
    )
    return Analysis(table, summary, setup, settings, vuln, measures, features, stats, sets, canary)


def _vulnerability(
    scores: np.ndarray, setup: AuditSetup, logits: np.ndarray, settings: AnalysisSettings
) -> Vulnerability:
    """Per-sample vulnerability to the attack with ``scores``, with the retrained models'
    LiRA signal (the rescaled logit averaged over queries) for the separation."""
    labels = setup.dataset.y[setup.split.pool]
    phi = rescaled_logit(logits, labels[None, :, None]).mean(axis=2)
    return per_sample_vulnerability(
        scores, setup.keep, phi, settings.fpr, settings.fdr, tail_fraction=settings.tail_fraction
    )


def _link(
    vuln: Vulnerability,
    measures: dict[str, np.ndarray],
    sets: dict[str, np.ndarray],
    labels: np.ndarray,
    canary: np.ndarray,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The link statistics of vulnerability with the outlierness measures, and the same
    without the canaries (None without canaries)."""
    outlierness = [k for k in measures if k not in MEMBERSHIP_DEPENDENT]
    stats = link_statistics(vuln.score, measures, sets, labels, outlierness)
    if not canary.any():
        return stats, None
    natural = ~canary
    natural_stats = link_statistics(
        vuln.score[natural],
        {k: v[natural] for k, v in measures.items()},
        {k: s[natural] for k, s in sets.items()},
        labels[natural],
        outlierness,
    )
    return stats, natural_stats


def _table(
    result: AuditResult,
    vuln: Vulnerability,
    labels: np.ndarray,
    canary: np.ndarray,
    sets: dict[str, np.ndarray],
    measures: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The per-sample table: id, vulnerability and its statistics, then every measure. The
    ``label`` column holds the user's original labels, as the audit's samples.csv does."""
    table: dict[str, np.ndarray] = {
        "sample_id": result.sample_ids.astype(str),
        "vulnerability": vuln.score,
        "vulnerability_low": vuln.low,
        "vulnerability_high": vuln.high,
        "vulnerability_out": vuln.out_control,
        "vulnerability_tail": vuln.tail,
        "rank": vuln.rank,
        "label": original_labels(labels, result.design.get("label_values")),
        "canary": canary.astype(np.int64),
        "in_targets": vuln.n_in.astype(np.int64),
        "separation": vuln.separation,
        "separation_se": vuln.separation_se,
    }
    for lv, r in vuln.levels.items():
        key = fpr_key(lv)
        table[f"tpr@{key}"] = r.tpr
        table[f"tpr@{key}_low"] = r.tpr_low
        table[f"tpr@{key}_high"] = r.tpr_high
        table[f"q@{key}"] = r.q_value
        table[f"vulnerable@{key}"] = r.vulnerable.astype(np.int64)
    table["top"] = sets["top"].astype(np.int64)
    table.update(measures)
    return table
