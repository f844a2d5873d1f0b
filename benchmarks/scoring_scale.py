"""Streaming scoring at scale: LiRA and RMIA on up to 10^6 samples x 64 models.

For each number of samples, synthetic signals of 64 models (a per-sample difficulty
plus membership plus model noise; members from the audit's complementary-pairs keep
mask) are written model by model into an on-disk :class:`SignalStore`; then a fresh
process scores every model as the target with the 63 others as references
(leave-one-out) with LiRA online/offline and RMIA online/offline, reading the signals
in chunks and writing the scores (64 x N float64 per attack) to disk chunk by chunk,
and records each attack's time and the process's peak resident memory.

    python benchmarks/scoring_scale.py --out results/scoring_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ATTACKS = ["lira_online", "lira_offline", "rmia_online", "rmia_offline"]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_store(root: Path, n: int, z: int, models: int, seed: int) -> None:
    """Synthetic LiRA (rescaled logit) and RMIA (probability) signals, one model at a time."""
    from mialens.attacks import build_attack
    from mialens.signals.store import SignalStore
    from mialens.splits import keep_mask

    rng = np.random.default_rng(seed)
    member = keep_mask(models, n, seed)
    difficulty = rng.normal(0, 2, n)
    pop_difficulty = rng.normal(0, 2, z)
    specs = [build_attack(a).signal() for a in ATTACKS]
    store = SignalStore.create(root, specs, member, np.zeros(n, np.int64), 1, np.zeros(z, np.int64))
    for k in range(models):
        phi = (difficulty + member[k] + rng.normal(0, 0.5, n))[:, None]
        pop_phi = (pop_difficulty + rng.normal(0, 0.5, z))[:, None]
        for spec in specs:
            if spec.name == "rescaled_logit":
                store.write(k, spec, phi, pop_phi)
            else:
                store.write(k, spec, 1 / (1 + np.exp(-phi)), 1 / (1 + np.exp(-pop_phi)))


def child(root: str, scores_dir: str) -> None:
    """Score every attack on the store at ``root``; print times and peak memory as JSON."""
    from mialens.attacks import build_attack
    from mialens.audit.engine import score_targets
    from mialens.metrics import auc
    from mialens.signals.store import SignalStore

    store = SignalStore(root)
    before = peak_rss_mb()
    seconds, sanity, scores = {}, {}, {}
    targets = range(store.num_models)
    for name in ATTACKS:
        start = time.perf_counter()
        attack = build_attack(name)
        scores[name] = score_targets([attack], store, targets, scores_dir=scores_dir).scores[name]
        seconds[name] = time.perf_counter() - start
        sanity[name] = auc(scores[name][0], store.member[0])
    print(
        json.dumps(
            {
                "seconds": seconds,
                "auc_target0": sanity,
                "peak_rss_mb": peak_rss_mb(),
                "peak_rss_before_scoring_mb": before,
                "scores_on_disk_mb": sum(s.nbytes for s in scores.values()) / 2**20,
            }
        )
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--samples", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--models", type=int, default=64)
    parser.add_argument("--population", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mialens-scoring-"))
    rows = []
    print(
        f"{'samples':>10} {'models':>6} "
        + " ".join(f"{a + ' s':>15}" for a in ATTACKS)
        + f" {'peak MB':>9} {'signals on disk MB':>19}"
    )
    try:
        for n in args.samples:
            root = work / f"n{n}"
            build_store(root, n, args.population, args.models, args.seed)
            disk = sum(f.stat().st_size for f in root.iterdir()) / 2**20
            cmd = [sys.executable, __file__, "--child", str(root), str(work / f"scores{n}")]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row.update(samples=n, models=args.models, population=args.population)
            row["signal_store_mb"] = disk
            rows.append(row)
            shutil.rmtree(root)
            shutil.rmtree(work / f"scores{n}")
            print(
                f"{n:>10} {args.models:>6} "
                + " ".join(f"{row['seconds'][a]:>15.1f}" for a in ATTACKS)
                + f" {row['peak_rss_mb']:>9.0f} {disk:>19.0f}",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result: dict = {"runs": rows}
    for row in rows:
        if row["samples"] == 1_000_000:
            result["peak_rss_mb_1e6"] = row["peak_rss_mb"]
    result["machine"] = platform.platform()
    result["cpu_count"] = os.cpu_count()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
