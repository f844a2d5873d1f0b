"""How often the bootstrap interval of TPR at a low FPR covers the population TPR.

A seeded simulation of an audit whose population ROC is known: T targets score the same
N samples; sample ``i`` has a difficulty ``d_i ~ N(0, 1)`` shared by every target, and
target ``t`` scores it ``d_i + mu * member_ti + e_ti`` with ``e_ti ~ N(0, 1)``, its
members a random half of the samples. Members' and non-members' scores are then normal
with standard deviation sqrt(2), so the population TPR at FPR ``a`` is
``1 - Phi(Phi^-1(1 - a) - mu / sqrt(2))``. Each replicate draws a new audit and computes
:func:`mialens.metrics.bootstrap_ci` (the percentile bootstrap of the mean over targets,
200 resamples, as an audit reports it); the coverage is the share of replicates whose
95% interval holds the population TPR, with its 95% Wilson interval.

The number that decides coverage is the count of false positives the level allows each
target, ``k = floor(a * non-members)``: the empirical threshold sits just above the
(k+1)-th highest non-member, whose population FPR is Beta(k + 1, n - k), on average
(k + 1) / (n + 1), above ``a``, and a resample cannot show that. The audit flags
intervals at levels with fewer allowed false positives than
:data:`mialens.metrics.leakage.MIN_FALSE_POSITIVES_FOR_INTERVAL` from these numbers.

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
    """One row per level: the coverage of ``replicates`` simulated audits."""
    n = 2 * nonmembers
    rng = np.random.default_rng([seed, nonmembers, targets, int(mu * 1000)])
    truth = {a: population_tpr(mu, a) for a in LEVELS}
    hits = {a: [0, 0, 0] for a in LEVELS}  # covered, truth below, truth above the interval
    widths = {a: [] for a in LEVELS}
    for r in range(replicates):
        members = np.zeros((targets, n), dtype=bool)
        for t in range(targets):
            members[t, rng.permutation(n)[:nonmembers]] = True
        scores = rng.normal(size=n) + mu * members + rng.normal(size=(targets, n))
        ci = bootstrap_ci(scores, members, LEVELS, n_boot=200, seed=r)
        for a in LEVELS:
            low, high = ci["tpr_at_fpr"][a]["low"], ci["tpr_at_fpr"][a]["high"]
            index = 0 if low <= truth[a] <= high else (1 if truth[a] < low else 2)
            hits[a][index] += 1
            widths[a].append(high - low)
    rows = []
    for a in LEVELS:
        low, high = wilson(hits[a][0], replicates)
        rows.append(
            {
                "nonmembers": nonmembers,
                "level": a,
                "allowed_false_positives": math.floor(a * nonmembers),
                "mu": mu,
                "targets": targets,
                "population_tpr": truth[a],
                "coverage": hits[a][0] / replicates,
                "coverage_low": low,
                "coverage_high": high,
                "truth_below": hits[a][1] / replicates,
                "truth_above": hits[a][2] / replicates,
                "mean_width": float(np.mean(widths[a])),
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
    print(f"{'k':>3} {'non-members':>11} {'FPR':>6} {'mu':>4} {'TPR':>7} "
          f"{'coverage [95% CI]':>22} {'truth below':>11}")  # fmt: skip
    for r in rows:
        cover = f"{r['coverage']:.3f} [{r['coverage_low']:.3f}, {r['coverage_high']:.3f}]"
        print(
            f"{r['allowed_false_positives']:>3} {r['nonmembers']:>11} {r['level']:>6g} "
            f"{r['mu']:>4g} {r['population_tpr']:>7.4f} {cover:>22} {r['truth_below']:>11.3f}"
        )


if __name__ == "__main__":
    main()
