"""The figures of the analysis page, each as ``{title, alt, png, caption}``."""

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
        "title": "Per-sample vulnerability",
        "alt": "histogram of vulnerability and its relation to the LiRA separation",
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
        "caption": (
            f"Left: vulnerability of every pool sample ({summary.attack}): the mean over "
            "the targets it trained of −log10 of the FPR at which the target's threshold "
            "would just catch it; dotted: chance, dash-dotted: its ceiling. Middle: the "
            "tail vulnerability (fitted exponential tail of each target's "
            "non-member scores), which orders the samples at the ceiling, against it. "
            "Right: the tail vulnerability against the LiRA separation of the IN and OUT "
            f"signal. Red: {label}; dashed: the cut of the top "
            f"{100 * settings.top_fraction:g}%."
        ),
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
    space = "features of model 0" if a.features is not None else "inputs"
    points = a.features[0][pick] if a.features is not None else setup.dataset.x[pool][pick]
    top_label = set_label("top", settings)
    return {
        "title": "t-SNE embedding",
        "alt": "t-SNE of the samples with vulnerable samples highlighted",
        "png": plots.embedding_png(
            plots.tsne_embedding(points, seed),
            setup.dataset.y[pool][pick],
            a.sets["top"][pick],
            a.canary[pick],
            top_label,
        ),
        "caption": (
            f"t-SNE of the {space} for {pick.size} samples that did not train model 0 "
            f"(so their position is not shaped by memorisation), coloured by class; "
            f"ringed: the {top_label} samples; crosses: canaries."
        ),
    }


def _measures(a: Analysis) -> dict[str, Any] | None:
    rho = {k: v["rho"] for k, v in a.statistics["spearman"].items()}
    shown = sorted((k for k in rho if rho[k] is not None), key=lambda k: -abs(rho[k]))[:6]
    if not shown:
        return None
    return {
        "title": "Outlierness against vulnerability",
        "alt": "mean vulnerability per decile of the most correlated measures",
        "png": plots.measures_png(a.vulnerability.score, {k: a.measures[k] for k in shown}, rho),
        "caption": (
            "The six measures with the largest |Spearman ρ|: mean vulnerability (95% "
            "t-interval) in each decile of the measure; dotted: chance."
        ),
    }


def _auc(a: Analysis) -> dict[str, Any] | None:
    primary = a.summary.primary_set
    entries = a.statistics["sets"].get(primary, {}).get("measures")
    if not entries:
        return None
    size = a.statistics["sets"][primary]["size"]
    return {
        "title": "Which measure predicts the vulnerable set",
        "alt": "AUC of every measure for membership of the vulnerable set",
        "png": plots.auc_png(
            entries,
            f"{set_label(primary, a.settings)} ({size})",
            a.summary.measure_groups,
            GROUPS,
        ),
        "caption": (
            "AUC of each measure for telling the vulnerable set from the other samples "
            "with its 95% DeLong interval (logit scale), coloured by group; filled: "
            "Holm-adjusted Mann-Whitney p < 0.05 over all measures."
        ),
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
        "title": "Most vulnerable images and class prototypes",
        "alt": "gallery of the most vulnerable images beside their class prototypes",
        "png": plots.gallery_png(
            x[order], captions, x[protos], [f"prototype: {names[labels[i]]}" for i in order]
        ),
        "caption": (
            "The most vulnerable samples (red caption: rank, id and given label) each beside "
            "the natural sample of its class closest to the class mean in input space."
        ),
    }


def _epochs(a: Analysis) -> dict[str, Any] | None:
    epochs = a.summary.epochs
    if not epochs:
        return None
    label = set_label(a.summary.primary_set, a.settings)
    return {
        "title": "Member and non-member signals over training",
        "alt": "per-epoch distributions of the LiRA signal",
        "png": plots.epochs_png(epochs),
        "caption": (
            f"The first {a.settings.epoch_models} models retrained with a record after "
            "every epoch: median and 10–90% band of φ = log(p_y / (1 − p_y)) for their "
            f"members, non-members and members in the set '{label}'; below, the AUC "
            "of φ per epoch (the reference-free loss attack)."
        ),
    }
