"""Figures of the leakage analysis and of a study, as PNG bytes.

Like :mod:`mialens.report.plots`, every figure is a :class:`matplotlib.figure.Figure`
on its own Agg canvas, never pyplot's global state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from mialens.analysis.vulnerability import CHANCE_VULNERABILITY
from mialens.report.plots import MEMBER_COLOR, NONMEMBER_COLOR, figure_png

VULNERABLE_COLOR = "#d62728"
CANARY_COLOR = "#ff7f0e"
_GREY = "0.6"


def _text(label: str) -> str:
    return label.replace("$", r"\$")


def tsne_embedding(points: np.ndarray, seed: int) -> np.ndarray:
    """2-D t-SNE of ``points (n, d)`` (PCA initialisation, perplexity 30 or n/4).

    Runs on one thread: Barnes-Hut t-SNE's OpenMP threads are slower than one as soon
    as the machine has other work (20x on two busy cores)."""
    x = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 4)))
    with threadpool_limits(limits=1):
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def vulnerability_png(
    score: np.ndarray,
    tail: np.ndarray,
    separation: np.ndarray,
    vulnerable: np.ndarray,
    canary: np.ndarray,
    ceiling: float,
    top_threshold: float,
    set_label: str,
) -> bytes:
    """Left: the distribution of the conformal vulnerability (canaries apart) and its
    ceiling; middle: the tail vulnerability that ranks samples against it; right: the
    tail vulnerability against the LiRA separation. The vulnerable set is highlighted."""
    fig = Figure(figsize=(13, 3.9), layout="constrained")
    left, middle, right = fig.subplots(1, 3)
    edges = np.linspace(0, max(score.max(), CHANCE_VULNERABILITY) * 1.02, 41)
    groups = [(~canary, NONMEMBER_COLOR, "pool samples")]
    if canary.any():
        groups.append((canary, CANARY_COLOR, "canaries"))
    for mask, color, label in groups:
        left.hist(score[mask], edges, color=color, alpha=0.55, label=label)
    left.set_yscale("log")
    left.axvline(CHANCE_VULNERABILITY, color=_GREY, ls=":", label="chance (1/ln 10)")
    left.axvline(ceiling, color="k", ls="-.", lw=1, label="ceiling log10(1 + n_out)")
    left.set_xlabel("vulnerability: mean over IN targets of −log10 detection FPR")
    left.set_ylabel("samples (log)")
    left.legend(fontsize=8, frameon=False)
    for ax, x, xlabel in (
        (middle, score, "vulnerability (conformal)"),
        (right, separation, "LiRA separation (Cohen's d of the IN vs OUT signal)"),
    ):
        ax.scatter(x[~vulnerable], tail[~vulnerable], s=4, color=_GREY, alpha=0.4)
        ax.scatter(x[vulnerable], tail[vulnerable], s=6, color=VULNERABLE_COLOR, label=set_label)
        if canary.any():
            ax.scatter(
                x[canary], tail[canary], s=18, marker="x", color=CANARY_COLOR, label="canaries"
            )
        ax.axhline(top_threshold, color=VULNERABLE_COLOR, ls="--", lw=1, label="top-ranked cut")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("tail vulnerability (fitted tail; ranks samples)")
        ax.legend(fontsize=8, frameon=False, loc="upper left")
    middle.axvline(ceiling, color="k", ls="-.", lw=1)
    return figure_png(fig)


def embedding_png(
    points: np.ndarray,
    labels: np.ndarray,
    vulnerable: np.ndarray,
    canary: np.ndarray,
    set_label: str,
) -> bytes:
    """t-SNE points coloured by class, vulnerable samples ringed, canaries crossed."""
    fig = Figure(figsize=(7, 6.2), layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["tab20"]
    colors = [cmap(int(c) % cmap.N) for c in labels]
    ax.scatter(points[:, 0], points[:, 1], s=8, c=colors, alpha=0.7, edgecolors="none")
    ax.scatter(
        points[vulnerable, 0],
        points[vulnerable, 1],
        s=26,
        facecolors="none",
        edgecolors=VULNERABLE_COLOR,
        linewidths=0.9,
        label=set_label,
    )
    if canary.any():
        ax.scatter(
            points[canary, 0], points[canary, 1], s=22, marker="x", c=CANARY_COLOR, label="canaries"
        )
    ax.set_xticks([])
    ax.set_yticks([])
    fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return figure_png(fig)


def measures_png(
    vulnerability: np.ndarray, measures: dict[str, np.ndarray], rho: dict[str, float | None]
) -> bytes:
    """Mean vulnerability (95% t-interval) per decile of each measure."""
    names = list(measures)
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    fig = Figure(figsize=(3.4 * ncols, 2.7 * nrows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, name in zip(axes, names, strict=False):
        v = measures[name]
        ok = np.isfinite(v)
        order = np.argsort(v[ok], kind="stable")
        bins = np.array_split(vulnerability[ok][order], 10)
        means = np.array([b.mean() for b in bins])
        half = np.array([1.96 * b.std(ddof=1) / np.sqrt(b.size) if b.size > 1 else 0 for b in bins])
        x = np.arange(1, 11)
        ax.errorbar(x, means, yerr=half, fmt="o-", ms=3, lw=1.2, color=MEMBER_COLOR, capsize=2)
        ax.axhline(CHANCE_VULNERABILITY, color=_GREY, ls=":", lw=1)
        r = rho.get(name)
        ax.set_title(_text(name) + (f"  (ρ = {r:.2f})" if r is not None else ""), fontsize=9)
        ax.set_xticks(x)
        ax.tick_params(labelsize=7)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    fig.supxlabel("decile of the measure (1 = most typical, 10 = most atypical)", fontsize=8)
    fig.supylabel("mean vulnerability", fontsize=8)
    return figure_png(fig)


_GROUP_COLORS = {"geometric": "#2ca02c", "output": NONMEMBER_COLOR, "memorization": "#9467bd"}


def auc_png(
    entries: dict[str, dict[str, Any]], title: str, groups: dict[str, str], group_names: dict
) -> bytes:
    """Each measure's AUC for predicting a vulnerable set, with its 95% interval, coloured
    by the measure's group; filled markers: Holm-adjusted p < 0.05."""
    items = sorted(
        ((k, e) for k, e in entries.items() if e.get("auc") is not None),
        key=lambda item: item[1]["auc"],
    )
    fig = Figure(figsize=(6.8, 0.26 * len(items) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, e) in enumerate(items):
        color = _GROUP_COLORS[groups[name]]
        significant = e.get("p_holm") is not None and e["p_holm"] < 0.05
        ax.plot([e["ci_low"], e["ci_high"]], [i, i], color=color, lw=1.4)
        ax.plot(
            e["auc"], i, "o", ms=5, color=color, markerfacecolor=color if significant else "white"
        )
    for group in dict.fromkeys(groups[k] for k, _ in items):
        ax.plot([], [], "o", color=_GROUP_COLORS[group], label=_text(group_names[group]))
    ax.axvline(0.5, color=_GREY, ls=":", lw=1)
    ax.set_yticks(range(len(items)), [_text(k) for k, _ in items], fontsize=7.5)
    ax.set_xlabel("AUC for membership of the vulnerable set (0.5 = no link)", fontsize=9)
    ax.set_title(_text(title), fontsize=9)
    ax.grid(True, axis="x", color="0.92")
    fig.legend(loc="outside lower center", ncols=1, fontsize=7.5, frameon=False)
    return figure_png(fig)


def _show(ax, image: np.ndarray) -> None:
    img = np.asarray(image, dtype=np.float64)
    lo, hi = img.min(), img.max()
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.transpose(img[:3], (1, 2, 0)))
    ax.set_xticks([])
    ax.set_yticks([])


def gallery_png(
    images: np.ndarray, captions: list[str], prototypes: np.ndarray, proto_captions: list[str]
) -> bytes:
    """Pairs: each vulnerable sample (left) beside the prototype of its class (right)."""
    n = len(images)
    ncols = min(4, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(2.6 * ncols, 1.55 * nrows + 0.3), layout="constrained")
    axes = fig.subplots(nrows, 2 * ncols, squeeze=False)
    for i in range(nrows * ncols):
        a, b = axes[i // ncols, 2 * (i % ncols)], axes[i // ncols, 2 * (i % ncols) + 1]
        if i >= n:
            a.set_visible(False)
            b.set_visible(False)
            continue
        _show(a, images[i])
        a.set_title(_text(captions[i]), fontsize=6.5, color=VULNERABLE_COLOR)
        _show(b, prototypes[i])
        b.set_title(_text(proto_captions[i]), fontsize=6.5, color="0.3")
    return figure_png(fig)


def epochs_png(epochs: list[dict[str, Any]]) -> bytes:
    """Median and 10-90% band of the LiRA signal per epoch for members, non-members and
    vulnerable members; the AUC of the signal per epoch below."""
    fig = Figure(figsize=(7.5, 5.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.2])
    x = [e["epoch"] for e in epochs]
    groups = (
        ("nonmembers", NONMEMBER_COLOR, "non-members"),
        ("members", MEMBER_COLOR, "members"),
        ("vulnerable_members", "#6a3d9a", "vulnerable members"),
    )
    for key, color, label in groups:
        q = [e["quantiles"].get(key) for e in epochs]
        if any(v is None for v in q):
            continue
        q = np.array(q)
        top.fill_between(x, q[:, 0], q[:, 2], color=color, alpha=0.18, lw=0)
        top.plot(x, q[:, 1], color=color, lw=1.6, label=label)
    top.set_ylabel("φ = log(p_y / (1 − p_y))")
    top.legend(fontsize=8, frameon=False)
    bottom.plot(x, [e["auc"] for e in epochs], "o-", ms=3, color="0.2")
    bottom.axhline(0.5, color=_GREY, ls=":", lw=1)
    bottom.set_ylabel("AUC of φ")
    bottom.set_xlabel("epoch")
    return figure_png(fig)


def study_png(rows: list[dict[str, Any]], level_key: str) -> bytes:
    """Left: test accuracy against the TPR at ``level_key`` per setting; right: the common
    measure's Spearman rho (95% interval) with vulnerability against the generalisation gap."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    for row in rows:
        name = _text(row["name"])
        tpr = row["tpr_at_fpr"].get(level_key)
        if tpr is not None:
            left.scatter(max(tpr, 1e-4), row["test_acc"], color=MEMBER_COLOR, s=18)
            left.annotate(name, (max(tpr, 1e-4), row["test_acc"]), fontsize=7,
                          xytext=(3, 2), textcoords="offset points")  # fmt: skip
        common = row.get("common") or {}
        if common.get("rho") is not None:
            gap, rho = row["generalization_gap"], common["rho"]
            err = [[rho - common["ci_low"]], [common["ci_high"] - rho]]
            right.errorbar(gap, rho, yerr=err, fmt="o", ms=4, color=NONMEMBER_COLOR, capsize=2)
            right.annotate(name, (gap, rho), fontsize=7, xytext=(3, 2), textcoords="offset points")
    left.set_xscale("log")
    left.set_xlabel(f"TPR at FPR {level_key} (log; 1e-4 stands for 0)")
    left.set_ylabel("test accuracy")
    right.axhline(0, color=_GREY, ls=":", lw=1)
    right.set_xlabel("generalisation gap (train − test accuracy)")
    right.set_ylabel("Spearman ρ with vulnerability")
    return figure_png(fig)
