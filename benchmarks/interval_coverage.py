"""How often the bootstrap interval of TPR at a low FPR covers the population TPR.

A seeded simulation of an audit whose population ROC is known: T targets score the same
N samples; sample ``i`` has a difficulty ``d_i ~ N(0, 1)`` shared by every target, and
target ``t`` scores it ``d_i + mu * member_ti + e_ti`` with ``e_ti ~ N(0, 1)``, its
members a random half of the samples. Members' and non-members' scores are then normal
with standard deviation sqrt(2), so the population TPR at FPR ``a`` is
``1 - Phi(Phi^-1(1 - a) - mu / sqrt(2))``. Each replicate draws a new audit and computes
:func:`mialens.metrics.bootstrap_ci` (the mean over targets, 200 resamples, as an audit
reports it) twice: the plain percentile interval (``widen=False``) and the interval the
audit reports, widened by the threshold's position where fewer than
:data:`~mialens.metrics.threshold_position.MIN_FALSE_POSITIVES_FOR_INTERVAL` false
positives are allowed (:mod:`mialens.metrics.threshold_position`). The coverage is the
share of replicates whose 95% interval holds the population TPR, with its 95% Wilson
interval; the width is the mean width.

What decides coverage is the count of false positives the level allows each target,
``k = floor(a * non-members)``: the plain interval undercovers at small ``k``.

    python benchmarks/interval_coverage.py --out results/interval_coverage.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

from mialens.metrics import bootstrap_ci

LEVELS = (0.001, 0.01)


def population_tpr(mu: float, level: float) -> float:
    """The TPR at FPR ``level`` of scores N(mu, 2) against N(0, 2)."""
    return float(norm.sf(norm.isf(level) - mu / math.sqrt(2)))


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``hits / n``."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def simulate(nonmembers: int, targets: int, mu: float, replicates: int, seed: int) -> list[dict]:
    """One row per level and interval: its coverage over ``replicates`` simulated audits."""
    n = 2 * nonmembers
    rng = np.random.default_rng([seed, nonmembers, targets, int(mu * 1000)])
    truth = {a: population_tpr(mu, a) for a in LEVELS}
    kinds = {"percentile": False, "reported": True}
    hits = {(kind, a): [0, 0, 0] for kind in kinds for a in LEVELS}  # covered, below, above
    widths = {key: [] for key in hits}
    for r in range(replicates):
        members = np.zeros((targets, n), dtype=bool)
        for t in range(targets):
            members[t, rng.permutation(n)[:nonmembers]] = True
        scores = rng.normal(size=n) + mu * members + rng.normal(size=(targets, n))
        for kind, widen in kinds.items():
            ci = bootstrap_ci(scores, members, LEVELS, n_boot=200, seed=r, widen=widen)
            for a in LEVELS:
                low, high = ci["tpr_at_fpr"][a]["low"], ci["tpr_at_fpr"][a]["high"]
                index = 0 if low <= truth[a] <= high else (1 if truth[a] < low else 2)
                hits[kind, a][index] += 1
                widths[kind, a].append(high - low)
    rows = []
    for (kind, a), (covered, below, above) in hits.items():
        low, high = wilson(covered, replicates)
        rows.append(
            {
                "interval": kind,
                "nonmembers": nonmembers,
                "level": a,
                "allowed_false_positives": math.floor(a * nonmembers),
                "mu": mu,
                "targets": targets,
                "population_tpr": truth[a],
                "coverage": covered / replicates,
                "coverage_low": low,
                "coverage_high": high,
                "truth_below": below / replicates,
                "truth_above": above / replicates,
                "mean_width": float(np.mean(widths[kind, a])),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument(
        "--nonmembers", type=int, nargs="+", default=[1000, 1500, 2000, 3000, 5000, 7000, 10000]
    )
    parser.add_argument("--mu", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--replicates", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    rows = []
    for mu in args.mu:
        for nonmembers in args.nonmembers:
            rows += simulate(nonmembers, args.targets, mu, args.replicates, args.seed)
    rows.sort(key=lambda r: (r["allowed_false_positives"], r["mu"], r["nonmembers"]))
    doc = {
        "setup": {**{k: v for k, v in vars(args).items() if k != "out"}, "nominal": 0.95},
        "machine": platform.platform(),
        "seconds": time.perf_counter() - start,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    head = f"{'k':>3} {'non-members':>11} {'FPR':>6} {'mu':>4} {'TPR':>7}  "
    print(head + f"{'percentile: coverage [95% CI], width':>38}  {'reported: coverage, width':>26}")
    by_setting = {}
    for r in rows:
        by_setting.setdefault(
            (r["allowed_false_positives"], r["nonmembers"], r["level"], r["mu"]), {}
        )[r["interval"]] = r
    for (k, nonmembers, level, mu), pair in by_setting.items():
        plain, reported = pair["percentile"], pair["reported"]
        cover = (
            f"{plain['coverage']:.3f} [{plain['coverage_low']:.3f}, {plain['coverage_high']:.3f}]"
            f", {plain['mean_width']:.4f}"
        )
        print(
            f"{k:>3} {nonmembers:>11} {level:>6g} {mu:>4g} {plain['population_tpr']:>7.4f}  "
            f"{cover:>38}  {reported['coverage']:>16.3f}, {reported['mean_width']:.4f}"
        )


if __name__ == "__main__":
    main()
