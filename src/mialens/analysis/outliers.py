"""Outlierness of every sample within its class.

Every measure is oriented so that higher means more atypical.

*Geometric measures* of a point set (the raw inputs, or one model's penultimate
features or centred logits), each relative to the other samples of the sample's class:

``centroid_cosine``, ``centroid_euclidean``
    cosine distance (``1 - cos``) and Euclidean distance to the mean of the *other*
    samples of the class.
``centroid_mahalanobis``
    Mahalanobis distance to the class mean under the class covariance with Ledoit &
    Wolf (2004) shrinkage (well conditioned even with fewer samples than dimensions).
``knn``
    mean Euclidean distance to the ``k`` nearest other samples of the class.
``lof``
    Local Outlier Factor (Breunig et al. 2000) within the class (about 1 for inliers).
``iforest``
    IsolationForest anomaly score (Liu et al. 2008), ``-score_samples``, within the class.
``border``
    distance to the own class centroid minus the distance to the nearest other class
    centroid: positive when the sample lies closer to another class.

Features and logits differ between models, so those measures are computed in each
model's space for the samples that did not train it, converted to percentiles among
them (scale-free across models) and averaged over the sample's OUT models.

*Output measures* over the audit's ``K`` models (their logits on the unmodified query):

``out_disagreement``
    share of OUT models whose prediction differs from the label (label noise).
``out_difficulty``
    ``1 -`` the OUT models' mean probability of the label (hard examples).
``out_neg_margin``
    minus the OUT models' mean logit margin ``z_y - max_{j != y} z_j``: positive when the
    sample sits on the wrong side of the decision boundary.
``memorization``
    Feldman & Zhang (2020), Eq. 1: ``Pr[h(x) = y | x IN] - Pr[h(x) = y | x OUT]``,
    estimated from models trained on random halves (their subsampled estimator with
    ``m = n / 2``).
``memorization_confidence``
    the same gap in the probability of the label.

*Groups* (:func:`measure_group`), which the headline keeps apart:

``geometric``
    outlierness of the sample's position within its class in input or feature space:
    the intra-class outliers of Carlini et al. (2022) and of "Membership Inference
    Attacks Beyond Overfitting".
``output``
    difficulty as the OUT models' outputs see it: disagreement, difficulty, negative
    margin, and the geometric measures in logit space. The logits are the output the
    attacks score, and the label margin, on which LiRA's OUT distribution is built, is
    a direction of that space, so these measures partly restate the attack's own signal.
``memorization``
    the IN-versus-OUT gaps, which restate vulnerability itself.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import softmax
from sklearn.covariance import ledoit_wolf_shrinkage
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from threadpoolctl import threadpool_limits

from mialens.errors import DataError
from mialens.signals.statistics import hinge

GEOMETRIC = (
    "centroid_cosine",
    "centroid_euclidean",
    "centroid_mahalanobis",
    "knn",
    "lof",
    "iforest",
    "border",
)
OUTPUT = (
    "out_disagreement",
    "out_difficulty",
    "out_neg_margin",
    "memorization",
    "memorization_confidence",
)
MEMBERSHIP_DEPENDENT = ("memorization", "memorization_confidence")
"""Measures computed from the models a sample trained: they partly restate vulnerability
(an IN-versus-OUT gap), so they are reported but never chosen as the best outlierness
measure."""
GROUPS = {
    "geometric": "geometric outlierness (input and feature space)",
    "output": "model-output difficulty (OUT models' outputs and logit space)",
    "memorization": "memorisation (IN−OUT gap)",
}
_TINY = 1e-12


def measure_group(name: str) -> str:
    """The group (a key of :data:`GROUPS`) of a measure name such as ``features_knn``."""
    if name in MEMBERSHIP_DEPENDENT:
        return "memorization"
    space = name.partition("_")[0]
    return "geometric" if space in ("input", "features") else "output"


def shrunk_mahalanobis(points: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of each row to the rows' mean under the Ledoit-Wolf covariance
    ``(1 - s) S + s tr(S) / d I`` (``S`` the maximum-likelihood covariance), as scikit-learn's
    ``LedoitWolf().fit(X).mahalanobis(X) ** 0.5`` but in O(n d min(n, d)) time.

    With ``X`` the centred rows, ``a = (1 - s) / n`` and ``b = s tr(S) / d``, the rows'
    squared distances are the diagonal of ``X (a X'X + b I)^-1 X'`` = ``U diag(l / (b + a l)) U'``
    for the eigen-decomposition ``X X' = U diag(l) U'`` (or the same through ``X'X`` when
    ``d < n``); a zero denominator contributes zero (the pseudo-inverse).
    """
    x = points - points.mean(axis=0)
    n, d = x.shape
    s = ledoit_wolf_shrinkage(x, assume_centered=True)
    a, b = (1 - s) / n, s * np.sum(x * x) / (n * d)
    lam, vectors = np.linalg.eigh(x @ x.T if n <= d else x.T @ x)
    lam = np.maximum(lam, 0.0)
    denom = b + a * lam
    inverse = np.where(denom > _TINY, 1.0 / np.where(denom > _TINY, denom, 1.0), 0.0)
    # n <= d: sum_j U_ij^2 l_j / (b + a l_j); else sum_j (x_i . v_j)^2 / (b + a l_j)
    squared = vectors**2 @ (lam * inverse) if n <= d else (x @ vectors) ** 2 @ inverse
    return np.sqrt(np.maximum(squared, 0.0))


def geometric_measures(
    points: np.ndarray,
    labels: np.ndarray,
    neighbors: int = 10,
    trees: int = 100,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Every geometric measure of every sample of ``points (N, d)`` within its class.

    Classes with fewer than three samples get NaN. BLAS runs single-threaded here: the
    per-class matrices are small, and threads only contend.
    """
    x = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    labels = np.asarray(labels)
    if len(labels) != len(x):
        raise DataError(f"{len(x)} points but {len(labels)} labels")
    out = {name: np.full(len(x), np.nan) for name in GEOMETRIC}
    classes = np.unique(labels)
    centroids = np.stack([x[labels == c].mean(axis=0) for c in classes])
    with threadpool_limits(limits=1, user_api="blas"):
        for ci, c in enumerate(classes):
            idx = np.flatnonzero(labels == c)
            if idx.size >= 3:
                rest = np.delete(centroids, ci, axis=0)
                for name, v in _class_measures(
                    x[idx], centroids[ci], rest, neighbors, trees, seed
                ).items():
                    out[name][idx] = v
    return out


def _class_measures(
    pts: np.ndarray, centroid: np.ndarray, rest: np.ndarray, neighbors: int, trees: int, seed: int
) -> dict[str, np.ndarray]:
    """The geometric measures of the ``n >= 3`` samples of one class (``rest``: the other
    classes' centroids)."""
    n = len(pts)
    others = (n * centroid - pts) / (n - 1)  # leave-one-out class means
    own = np.linalg.norm(pts - others, axis=1)
    norms = np.linalg.norm(pts, axis=1) * np.linalg.norm(others, axis=1)
    k = min(neighbors, n - 1)
    sq = np.sum(pts * pts, axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * pts @ pts.T, 0.0))
    np.fill_diagonal(dist, 0.0)
    nearest = np.sort(dist + np.diag(np.full(n, np.inf)), axis=1)[:, :k]  # self excluded
    lof = LocalOutlierFactor(n_neighbors=k, metric="precomputed").fit(dist)
    forest = IsolationForest(n_estimators=trees, random_state=seed).fit(pts)
    out = {
        "centroid_cosine": 1 - np.sum(pts * others, axis=1) / np.maximum(norms, _TINY),
        "centroid_euclidean": own,
        "centroid_mahalanobis": shrunk_mahalanobis(pts),
        "knn": nearest.mean(axis=1),
        "lof": -lof.negative_outlier_factor_,
        "iforest": -forest.score_samples(pts),
        "border": np.full(n, np.nan),
    }
    if len(rest):
        to_rest = sq[:, None] + (rest**2).sum(axis=1)[None] - 2 * pts @ rest.T
        out["border"] = own - np.sqrt(np.maximum(to_rest, 0.0)).min(axis=1)
    return out


def percentile_within(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Percentile rank in (0, 1] of each masked value among the masked values; NaN elsewhere
    (NaN values stay NaN and are not ranked)."""
    out = np.full(values.shape, np.nan)
    sel = mask & np.isfinite(values)
    if sel.any():
        out[sel] = stats.rankdata(values[sel]) / sel.sum()
    return out


def mean_over_out_models(per_model: list[dict[str, np.ndarray]], out: np.ndarray) -> dict:
    """Average each measure's within-model percentile over the models a sample is OUT of.

    ``per_model[k]`` holds measures of every sample in model ``k``'s space and
    ``out (K, N)`` says which samples did not train model ``k``.
    """
    names = per_model[0].keys()
    result = {}
    for name in names:
        ranks = np.stack(
            [percentile_within(m[name], out[k]) for k, m in enumerate(per_model)]
        )  # (K, N), NaN where the sample trained the model
        with np.errstate(invalid="ignore"):
            counts = np.isfinite(ranks).sum(axis=0)
            result[name] = np.where(counts > 0, np.nansum(ranks, axis=0) / counts, np.nan)
    return result


def output_measures(logits: np.ndarray, labels: np.ndarray, members: np.ndarray) -> dict:
    """Label-noise, difficulty and memorisation measures from ``logits (K, N, C)`` of the
    audit's models with membership ``members (K, N)`` (see the module docstring)."""
    z = np.asarray(logits, dtype=np.float64)
    m = np.asarray(members, dtype=bool)
    if z.ndim != 3 or z.shape[:2] != m.shape:
        raise DataError(f"logits must be (models, samples, classes) matching {m.shape}")
    n_in, n_out = m.sum(axis=0), (~m).sum(axis=0)
    if (n_in == 0).any() or (n_out == 0).any():
        raise DataError("every sample must be IN for some model and OUT for another")
    y = np.asarray(labels)
    correct = (z.argmax(axis=-1) == y).astype(np.float64)
    prob = np.take_along_axis(softmax(z, axis=-1), y[None, :, None], axis=-1)[..., 0]
    margin = hinge(z, y[None, :])

    def mean(values: np.ndarray, side: np.ndarray, count: np.ndarray) -> np.ndarray:
        return np.where(side, values, 0.0).sum(axis=0) / count

    return {
        "out_disagreement": 1 - mean(correct, ~m, n_out),
        "out_difficulty": 1 - mean(prob, ~m, n_out),
        "out_neg_margin": -mean(margin, ~m, n_out),
        "memorization": mean(correct, m, n_in) - mean(correct, ~m, n_out),
        "memorization_confidence": mean(prob, m, n_in) - mean(prob, ~m, n_out),
    }


_DESCRIPTIONS = {
    "centroid_cosine": "cosine distance to the mean of the other samples of the class",
    "centroid_euclidean": "Euclidean distance to the mean of the other samples of the class",
    "centroid_mahalanobis": "Mahalanobis distance to the class mean (Ledoit-Wolf covariance)",
    "knn": "mean distance to the k nearest other samples of the class",
    "lof": "Local Outlier Factor within the class",
    "iforest": "IsolationForest anomaly score within the class",
    "border": "distance to the own class centroid minus that to the nearest other centroid",
    "out_disagreement": "share of OUT models predicting another class than the label",
    "out_difficulty": "1 − OUT models' mean probability of the label",
    "out_neg_margin": "minus the OUT models' mean logit margin of the label",
    "memorization": "Feldman & Zhang memorisation: IN minus OUT accuracy (an IN-OUT gap "
    "like vulnerability itself, so never picked as the best measure)",
    "memorization_confidence": "IN minus OUT mean probability of the label (never picked "
    "as the best measure)",
}
_SPACES = {
    "input": "raw inputs",
    "features": "OUT features",
    "logits": "OUT logits",
}


def describe(name: str) -> tuple[str, str]:
    """A short label of the space and a one-line description of a measure name such as
    ``input_knn`` (features and logits: of the OUT models, as mean percentiles)."""
    space, _, base = name.partition("_")
    if space in _SPACES and base in _DESCRIPTIONS:
        return _SPACES[space], _DESCRIPTIONS[base]
    models = "IN/OUT" if name in MEMBERSHIP_DEPENDENT else "OUT"
    return f"{models} outputs", _DESCRIPTIONS.get(name, name)
