"""Statistics of the link between outlierness and vulnerability.

Every measure is oriented so that higher means more atypical, so a positive Spearman
correlation and an AUC above 0.5 both say "outliers are more vulnerable". Because many
measures are tested at once, p-values come with Holm's step-down adjustment over the
measures of a family (Holm 1979), which controls the family-wise error rate; the best
measure of a family is selected on the same data, so its estimate is optimistic, and
its Holm-adjusted p-value is the one to read. Undefined statistics (too few samples, a
constant measure) are ``None``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from mialens.metrics.delong import placements

MIN_GROUP = 10  # smallest group (class, vulnerable set) on which a statistic is computed


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values: ``max_{j <= i} min(1, (m - j + 1) p_(j))`` in sorted order;
    NaN entries stay NaN and do not count towards ``m``."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    adjusted = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adjusted)
    return out


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values: ``min_{j >= i} min(1, m p_(j) / j)`` in sorted order."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, p[order] * m / np.arange(1, m + 1))
    out = np.empty(m)
    out[order] = np.minimum.accumulate(scaled[::-1])[::-1]
    return out


def _pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def _value(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def spearman(x: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> dict[str, Any]:
    """Spearman's rho with its two-sided p-value (t approximation) and the Fisher-z
    interval with Bonett & Wright's (2000) variance ``(1 + rho^2 / 2) / (n - 3)``."""
    x, y = _pairs(x, y)
    n = x.size
    if n < MIN_GROUP or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": None, "ci_low": None, "ci_high": None, "p": None, "n": int(n)}
    rho, p = stats.spearmanr(x, y)
    z = np.arctanh(np.clip(rho, -1 + 1e-12, 1 - 1e-12))
    half = stats.norm.ppf((1 + confidence) / 2) * np.sqrt((1 + rho**2 / 2) / (n - 3))
    return {
        "rho": float(rho),
        "ci_low": float(np.tanh(z - half)),
        "ci_high": float(np.tanh(z + half)),
        "p": float(p),
        "n": int(n),
    }


def stratified_spearman(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """Spearman correlation within groups (classes), pooled.

    Both variables are ranked within each group of at least :data:`MIN_GROUP` samples,
    the ranks centred and divided by the group size, and the Pearson correlation of
    the pooled values is tested with ``n - G - 1`` degrees of freedom (a rank partial
    correlation given the group). Differences between groups cannot produce it, so it
    separates "outliers within a class leak" from "some classes leak".
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    rx, ry, used = [], [], 0
    for g in np.unique(groups[ok]):
        sel = ok & (groups == g)
        if sel.sum() < MIN_GROUP:
            continue
        for values, out in ((x[sel], rx), (y[sel], ry)):
            r = stats.rankdata(values)
            out.append((r - r.mean()) / r.size)
        used += 1
    n = sum(r.size for r in rx)
    empty = {"rho": None, "p": None, "n": int(n), "groups": used}
    if used == 0:
        return empty
    a, b = np.concatenate(rx), np.concatenate(ry)
    if not a.any() or not b.any():
        return empty
    rho = float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))
    df = n - used - 1
    if df < 1:
        return empty
    t = rho * np.sqrt(df / max(1e-300, 1 - rho**2))
    return {"rho": rho, "p": float(2 * stats.t.sf(abs(t), df)), "n": int(n), "groups": used}


def auc_test(values: np.ndarray, positive: np.ndarray, confidence: float = 0.95) -> dict[str, Any]:
    """AUC of ``values`` for separating ``positive`` from the other samples.

    AUC = P(positive value > other value), ties counting 1/2 (the Mann-Whitney U
    statistic divided by ``n_pos n_neg``). Interval: DeLong et al. (1988) variance on
    the logit scale (Pepe 2003), so it stays inside (0, 1). p-value: the two-sided
    Mann-Whitney U test of AUC = 0.5, i.e. of "the two groups' distributions differ".
    """
    v = np.asarray(values, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    ok = np.isfinite(v)
    a, b = v[ok & pos], v[ok & ~pos]
    m, n = a.size, b.size
    out: dict[str, Any] = {
        "auc": None,
        "ci_low": None,
        "ci_high": None,
        "p": None,
        "n_pos": int(m),
        "n_neg": int(n),
        "median_pos": _value(np.median(a)) if m else None,
        "median_neg": _value(np.median(b)) if n else None,
    }
    if m < 2 or n < 2 or np.ptp(np.concatenate([a, b])) == 0:
        return out
    auc, v10, v01 = placements(a, b)
    se = np.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
    if 0 < auc < 1 and se > 0:
        z = stats.norm.ppf((1 + confidence) / 2)
        logit = np.log(auc / (1 - auc))
        half = z * se / (auc * (1 - auc))
        low, high = 1 / (1 + np.exp(-(logit - half))), 1 / (1 + np.exp(-(logit + half)))
    else:
        low = high = auc
    out.update(
        auc=float(auc),
        ci_low=float(low),
        ci_high=float(high),
        p=float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue),
    )
    return out


def _adjust(entries: dict[str, dict[str, Any]]) -> None:
    """Add ``p_holm`` to every entry (Holm over the entries with a p-value)."""
    names = list(entries)
    p = np.array([np.nan if entries[k]["p"] is None else entries[k]["p"] for k in names])
    for name, adj in zip(names, holm(p), strict=True):
        entries[name]["p_holm"] = _value(adj)


def _best(entries: dict[str, dict[str, Any]], key: str, candidates: set[str]) -> str | None:
    scored = {k: e[key] for k, e in entries.items() if k in candidates and e.get(key) is not None}
    return max(scored, key=scored.get) if scored else None


def link_statistics(
    vulnerability: np.ndarray,
    measures: dict[str, np.ndarray],
    sets: dict[str, np.ndarray],
    labels: np.ndarray,
    candidates: list[str] | None = None,
) -> dict[str, Any]:
    """Every statistic of the link between each measure and vulnerability.

    ``spearman``: each measure's correlation with vulnerability; ``within_class``: the
    same within classes (:func:`stratified_spearman`); ``sets``: for each vulnerable set
    (a boolean mask), each measure's AUC for predicting membership of the set, which is
    also the Mann-Whitney comparison of vulnerable versus other samples. ``best`` names
    the measure among ``candidates`` (default: all) with the highest rho, within-class
    rho and AUC of each set.
    """
    pool = set(measures if candidates is None else candidates)
    corr = {k: spearman(v, vulnerability) for k, v in measures.items()}
    within = {k: stratified_spearman(v, vulnerability, labels) for k, v in measures.items()}
    _adjust(corr)
    _adjust(within)
    set_stats: dict[str, Any] = {}
    for key, mask in sets.items():
        size = int(mask.sum())
        if min(size, mask.size - size) < MIN_GROUP:
            set_stats[key] = {
                "size": size,
                "skipped": f"fewer than {MIN_GROUP} vulnerable or other samples",
            }
            continue
        entries = {k: auc_test(v, mask) for k, v in measures.items()}
        _adjust(entries)
        set_stats[key] = {"size": size, "measures": entries, "best": _best(entries, "auc", pool)}
    return {
        "n": len(vulnerability),
        "spearman": corr,
        "within_class": within,
        "sets": set_stats,
        "best": {
            "spearman": _best(corr, "rho", pool),
            "within_class": _best(within, "rho", pool),
        },
    }


def per_class(
    vulnerability: np.ndarray,
    measures: dict[str, np.ndarray],
    sets: dict[str, np.ndarray],
    labels: np.ndarray,
    class_names: list[str],
) -> list[dict[str, Any]]:
    """One row per class: size, mean vulnerability, vulnerable-set sizes and each
    measure's Spearman rho within the class (None below :data:`MIN_GROUP` samples)."""
    rows = []
    for c, name in enumerate(class_names):
        sel = labels == c
        if not sel.any():
            continue
        rows.append(
            {
                "class": c,
                "name": name,
                "n": int(sel.sum()),
                "mean_vulnerability": float(vulnerability[sel].mean()),
                "sets": {k: int(mask[sel].sum()) for k, mask in sets.items()},
                "spearman": {
                    k: spearman(v[sel], vulnerability[sel])["rho"] for k, v in measures.items()
                },
            }
        )
    return rows
