"""RMIA offline at scale: 10^6 audited samples against 10^5 population samples.

Scores through the public attack interface (fit on reference signals, score the
target) and records wall time and the process's peak resident memory. The pairwise
test never forms the N x Z ratio matrix (10^11 entries here); memory stays linear in
N + Z.

    python benchmarks/rmia_scale.py --out results/rmia_scale.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np

from mialens.attacks import ReferenceSignals, TargetSignals
from mialens.attacks.rmia import RMIAOffline


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_signals(n: int, z: int, refs: int, seed: int):
    """True-label probabilities of ``refs`` reference models and a target."""
    rng = np.random.default_rng(seed)
    member = rng.random((refs, n)) < 0.5
    difficulty = rng.normal(0, 2, n)
    logit = difficulty + member + rng.normal(0, 0.5, (refs, n))
    values = 1 / (1 + np.exp(-logit))
    pop_logit = rng.normal(0, 2, z) + rng.normal(0, 0.5, (refs, z))
    population = 1 / (1 + np.exp(-pop_logit))
    target_member = rng.random(n) < 0.5
    target = 1 / (1 + np.exp(-(difficulty + target_member + rng.normal(0, 0.5, n))))
    target_pop = 1 / (1 + np.exp(-(rng.normal(0, 2, z) + rng.normal(0, 0.5, z))))
    return values, member, population, target, target_pop, target_member


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--population", type=int, default=100_000)
    parser.add_argument("--references", type=int, default=4, help="OUT reference models")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    n, z, r = args.samples, args.population, args.references
    rss_imports = peak_rss_mb()
    values, member, pop, target, target_pop, target_member = synthetic_signals(n, z, r, args.seed)
    member[:] = False  # offline: references never trained on the audited samples
    labels = np.zeros(n, dtype=np.int64)
    refs = ReferenceSignals(
        values[:, :, None], member, labels, pop[:, :, None], np.zeros(z, np.int64)
    )
    inputs_mb = (
        refs.values.nbytes + refs.population.nbytes + target.nbytes + target_pop.nbytes
    ) / 2**20
    rss_before = peak_rss_mb()

    start = time.perf_counter()
    attack = RMIAOffline(a=0.3, gamma=1.0).fit(refs)
    fitted = time.perf_counter()
    scores = attack.score(TargetSignals(target[:, None], labels, target_pop[:, None]))
    done = time.perf_counter()

    from mialens.metrics import auc

    result = {
        "samples": n,
        "population": z,
        "reference_models": r,
        "seconds": done - start,
        "fit_seconds": fitted - start,
        "score_seconds": done - fitted,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_after_imports_mb": rss_imports,
        "peak_rss_before_attack_mb": rss_before,
        "input_arrays_mb": inputs_mb,
        "naive_ratio_matrix_gb": n * z * 8 / 2**30,
        "auc_sanity": auc(scores, target_member),
        "machine": platform.platform(),
        "cpu_count": __import__("os").cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(map(len, result))
    for key, value in result.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else f"{value}"
        print(f"{key:<{width}}  {shown}")


if __name__ == "__main__":
    main()
