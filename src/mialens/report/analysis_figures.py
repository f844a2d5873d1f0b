"""The figures of the analysis page, each as ``{caption, png, args}``: the name of its caption
macro in ``templates/_captions.html`` (title, alt text and caption), the PNG and the values
that caption states."""

from __future__ import annotations

from typing import Any

import numpy as np

from mialens.analysis.explain import Analysis
from mialens.analysis.outliers import GROUPS
from mialens.analysis.settings import AnalysisSettings
from mialens.report import analysis_plots as plots
from mialens.seeding import rng


def set_label(key: str, settings: AnalysisSettings) -> str:
    """How the report names a vulnerable set (an FPR level, or ``top``)."""
    if key == "top":
        return f"top {100 * settings.top_fraction:g}% most vulnerable"
    return f"vulnerable at {100 * float(key):g}% FPR (FDR {settings.fdr:g})"


def analysis_figures(analysis: Analysis) -> list[dict[str, Any]]:
    """Every figure the analysis has data for, in the page's order."""
    figures = (
        _vulnerability(analysis),
        _embedding(analysis),
        _measures(analysis),
        _auc(analysis),
        _gallery(analysis),
        _epochs(analysis),
    )
    return [f for f in figures if f is not None]


def _vulnerability(a: Analysis) -> dict[str, Any]:
    summary, vuln, settings = a.summary, a.vulnerability, a.settings
    label = set_label(summary.primary_set, settings)
    return {
        "caption": "vulnerability",
        "png": plots.vulnerability_png(
            vuln.score,
            vuln.tail,
            vuln.separation,
            a.sets[summary.primary_set],
            a.canary,
            summary.vulnerability.ceiling,
            summary.vulnerability.top["tail_threshold"],
            label,
        ),
        "args": {
            "attack": summary.attack,
            "set_label": label,
            "top_fraction": settings.top_fraction,
        },
    }


def _embedding(a: Analysis) -> dict[str, Any] | None:
    settings, setup = a.settings, a.setup
    if not settings.embedding_samples:
        return None
    seed = setup.config.audit.seed
    pick = np.flatnonzero(~setup.keep[0])
    if pick.size > settings.embedding_samples:
        pick = np.sort(rng(seed, "embedding").choice(pick, settings.embedding_samples, False))
    pool = setup.split.pool
    points = a.features[0][pick] if a.features is not None else setup.dataset.x[pool][pick]
    top_label = set_label("top", settings)
    return {
        "caption": "embedding",
        "png": plots.embedding_png(
            plots.tsne_embedding(points, seed),
            setup.dataset.y[pool][pick],
            a.sets["top"][pick],
            a.canary[pick],
            top_label,
        ),
        "args": {"features": a.features is not None, "samples": pick.size, "set_label": top_label},
    }


def _measures(a: Analysis) -> dict[str, Any] | None:
    rho = {k: v["rho"] for k, v in a.statistics["spearman"].items()}
    shown = sorted((k for k in rho if rho[k] is not None), key=lambda k: -abs(rho[k]))[:6]
    if not shown:
        return None
    return {
        "caption": "measures",
        "png": plots.measures_png(a.vulnerability.score, {k: a.measures[k] for k in shown}, rho),
        "args": {},
    }


def _auc(a: Analysis) -> dict[str, Any] | None:
    primary = a.summary.primary_set
    entries = a.statistics["sets"].get(primary, {}).get("measures")
    if not entries:
        return None
    size = a.statistics["sets"][primary]["size"]
    return {
        "caption": "auc",
        "png": plots.auc_png(
            entries,
            f"{set_label(primary, a.settings)} ({size})",
            a.summary.measure_groups,
            GROUPS,
        ),
        "args": {},
    }


def _gallery(a: Analysis) -> dict[str, Any] | None:
    """The most vulnerable images beside their class prototype (closest to the class mean)."""
    dataset, pool = a.setup.dataset, a.setup.split.pool
    if dataset.modality != "image" or not a.settings.gallery:
        return None
    x, labels, ids = dataset.x[pool], dataset.y[pool], dataset.ids[pool]
    names = dataset.class_names or tuple(str(c) for c in range(dataset.num_classes))
    flat = x.reshape(len(x), -1)
    prototypes = {}
    for c in np.unique(labels):
        idx = np.flatnonzero((labels == c) & ~a.canary)
        if idx.size:
            d = np.linalg.norm(flat[idx] - flat[idx].mean(axis=0), axis=1)
            prototypes[c] = idx[np.argmin(d)]
    rank = a.vulnerability.rank
    order = [i for i in np.argsort(rank) if labels[i] in prototypes][: a.settings.gallery]
    if not order:
        return None
    captions = [f"#{rank[i]} {ids[i]}: {names[labels[i]]}" for i in order]
    protos = [prototypes[labels[i]] for i in order]
    return {
        "caption": "gallery",
        "png": plots.gallery_png(
            x[order], captions, x[protos], [f"prototype: {names[labels[i]]}" for i in order]
        ),
        "args": {},
    }


def _epochs(a: Analysis) -> dict[str, Any] | None:
    epochs = a.summary.epochs
    if not epochs:
        return None
    label = set_label(a.summary.primary_set, a.settings)
    return {
        "caption": "epochs",
        "png": plots.epochs_png(epochs),
        "args": {"models": a.settings.epoch_models, "set_label": label},
    }
