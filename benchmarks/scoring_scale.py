"""Streaming scoring at scale: LiRA and RMIA on up to 10^6 samples x 64 models.

For each number of samples, synthetic signals of 64 models (a per-sample difficulty
plus membership plus model noise; members from the audit's complementary-pairs keep
mask) are written model by model into an on-disk :class:`SignalStore`; then a fresh
process scores every model as the target with the 63 others as references
(leave-one-out) with LiRA online/offline and RMIA online/offline, reading the signals
in chunks and writing the scores (64 x N float64 per attack) to disk chunk by chunk,
and records each attack's wall and CPU time and the process's peak resident memory.

The engine fits each target from sums over all models minus the target's own values
(:meth:`SignalAttack.fit_leaving_out`). For comparison, the first ``--refit-targets``
targets are also scored the former way, refitting every target on copies of its
references' signals: their time (and its extrapolation to every target), the largest
score differences and the largest difference of any metric (AUC, advantage, TPR at
FPR 1e-4, 1e-3, 1e-2) between the two.

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
FPR_LEVELS = (1e-4, 1e-3, 1e-2)


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


def refitting(name: str):
    """The attack ``name`` fitting every target on its references' signals (the former
    engine): the leave-one-out hooks fall back to :class:`SignalAttack`'s defaults."""
    from mialens.attacks import SignalAttack, attack_class, build_attack

    class Refit(attack_class(name)):
        def _fit_leaving_out(self, models, target):
            SignalAttack._fit_leaving_out(self, models, target)

        def chunk_summary_leaving_out(self, models, target):
            return SignalAttack.chunk_summary_leaving_out(self, models, target)

    return Refit(**build_attack(name).params.model_dump())


def metric_values(scores: np.ndarray, member: np.ndarray) -> np.ndarray:
    """AUC, advantage and TPR at :data:`FPR_LEVELS` of each target's row of scores."""
    from mialens.metrics import attack_metrics

    rows = []
    for s, m in zip(scores, member, strict=True):
        got = attack_metrics(s, m, FPR_LEVELS)
        rows.append([got.auc, got.advantage, *(got.tpr_at_fpr[v] for v in FPR_LEVELS)])
    return np.array(rows)


def timed(fn):
    """``fn()``, its wall and its CPU seconds (this process, all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def compare(name: str, store, fast: np.ndarray, refit_targets: int) -> dict:
    """Refit the first ``refit_targets`` targets; time and differences to ``fast``."""
    from mialens.audit.engine import score_targets

    targets = list(range(refit_targets))
    scored, wall, cpu = timed(lambda: score_targets([refitting(name)], store, targets))
    refit = scored.scores[name]
    diff = np.abs(fast[targets] - refit)
    member = store.member[targets]
    metrics = np.abs(metric_values(fast[targets], member) - metric_values(refit, member))
    return {
        "refit_targets": refit_targets,
        "refit_seconds": wall,
        "refit_cpu_seconds": cpu,
        "refit_seconds_all_targets": wall * store.num_models / refit_targets,
        "max_abs_score_difference": float(diff.max()),
        "max_rel_score_difference": float((diff / np.maximum(np.abs(refit), 1e-300)).max()),
        "max_metric_difference": float(metrics.max()),
    }


def child(root: str, scores_dir: str, refit_targets: int) -> None:
    """Score every attack on the store at ``root``; print times and peak memory as JSON."""
    from mialens.attacks import build_attack
    from mialens.audit.engine import score_targets
    from mialens.metrics import auc
    from mialens.signals.store import SignalStore

    store = SignalStore(root)
    before = peak_rss_mb()
    seconds, cpu, sanity, scores = {}, {}, {}, {}
    targets = range(store.num_models)
    for name in ATTACKS:
        scored, seconds[name], cpu[name] = timed(
            lambda name=name: score_targets(
                [build_attack(name)], store, targets, scores_dir=scores_dir
            )
        )
        scores[name] = scored.scores[name]
        sanity[name] = auc(scores[name][0], store.member[0])
    peak = peak_rss_mb()
    refit = {name: compare(name, store, scores[name], refit_targets) for name in ATTACKS}
    for name in ATTACKS:
        r = refit[name]
        r["speedup"] = r["refit_seconds_all_targets"] / seconds[name]
        r["speedup_cpu"] = (
            r["refit_cpu_seconds"] * store.num_models / r["refit_targets"] / cpu[name]
        )
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "auc_target0": sanity,
                "peak_rss_mb": peak,
                "peak_rss_before_scoring_mb": before,
                "scores_on_disk_mb": sum(s.nbytes for s in scores.values()) / 2**20,
                "refit": refit,
            }
        )
    )


def print_refit(row: dict) -> None:
    """The comparison with the refit of one run, one line per attack."""
    print(
        f"{'':>10} {'attack':>13} {'fast s':>8} {'fast CPU s':>10} {'refit s/target':>14} "
        f"{'refit s (all)':>13} {'speed-up':>8} {'CPU speed-up':>12} {'max |d score|':>13} "
        f"{'max |d metric|':>14}"
    )
    for name in ATTACKS:
        r = row["refit"][name]
        print(
            f"{'':>10} {name:>13} {row['seconds'][name]:>8.1f} {row['cpu_seconds'][name]:>10.1f} "
            f"{r['refit_seconds'] / r['refit_targets']:>14.2f} "
            f"{r['refit_seconds_all_targets']:>13.1f} {r['speedup']:>8.1f} "
            f"{r['speedup_cpu']:>12.1f} "
            f"{r['max_abs_score_difference']:>13.2e} {r['max_metric_difference']:>14.2e}",
            flush=True,
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--samples", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--models", type=int, default=64)
    parser.add_argument("--population", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--refit-targets", type=int, default=64, help="targets also scored by refitting"
    )
    args = parser.parse_args()
    if not 1 <= args.refit_targets <= args.models:
        parser.error("--refit-targets must be between 1 and --models")

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
            cmd.append(str(args.refit_targets))
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
            print_refit(row)
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
