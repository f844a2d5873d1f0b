"""Where an audit spends the time that is neither training nor scoring, by phase.

(a) ``location30``: the cached Location30 example audit (``examples/location30.yaml``,
16 MLPs, ten attacks, 200 bootstrap replicates) in a fresh process: the import, then the
workflow's phases (:mod:`mialens.workflows.phases`: design, load, scoring, metrics,
writing, report), the metrics split into point metrics and bootstrap intervals (re-timed
on the same scores), which of the heavy packages (:data:`HEAVY`) the run imported, and
the time of the whole ``mialens audit`` command. The report's figures are drawn by a
second process (:mod:`mialens.report.figure_worker`) while the audit computes its
intervals and writes its tables: the ``report`` phase is the wait for them and the page,
and the command's CPU seconds include that process. If the cache lacks models they are
trained first, untimed, and the run says so.

(b) ``synthetic``: an audit of 50,000 samples x 64 targets x 10 attacks (seeded scores,
half members per target, three attacks with tied scores): point metrics, bootstrap
intervals (200 replicates) and each report figure, timed separately.

Every time is given as wall seconds and as CPU seconds of the process (the steadier
number on a machine shared with other work).

    MIALENS_DATA_DIR=../shared/data python benchmarks/audit_overhead.py \
        --out results/audit_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "location30.yaml"
N_BOOT = 200
HEAVY = ("torch", "sklearn", "scipy.stats", "matplotlib", "opacus", "ray")
"""Packages whose import the cached audit should need only when it uses them."""


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> dict[str, float]:
    """Wall and CPU seconds since ``start`` (CPU: this process; steadier on a busy machine)."""
    wall, cpu = _clock()
    return {"wall": wall - start[0], "cpu": cpu - start[1]}


def _timed(seconds: dict, name: str, fn, *args):
    start = _clock()
    out = fn(*args)
    seconds[name] = _since(start)
    return out


def _metrics_split(result, metrics: dict[str, float], n_boot: int, seed: int) -> dict:
    """The metrics phase split: the bootstrap intervals of every attack re-timed on the
    same scores, and the point metrics as the rest of the phase."""
    from mialens.metrics import bootstrap_ci

    scores, members, levels = result.scores, result.members, result.fpr_levels
    start = _clock()
    for s in scores.values():
        bootstrap_ci(s, members, levels, n_boot=n_boot, seed=seed)
    boot = _since(start)
    rest = {k: metrics[k] - boot[k] for k in boot}
    return {"bootstrap": boot, "point_metrics (metrics - bootstrap)": rest}


def location_child(cache: str, out: str) -> None:
    """Run the cached audit in this process; print its phases as JSON."""
    start = _clock()
    from mialens.workflows.audit import run_audit
    from mialens.workflows.config import load_config
    from mialens.workflows.phases import timed_phases

    phases = {"import": _since(start)}
    config = load_config(EXAMPLE, [f"audit.cache_dir={cache}"])
    with timed_phases() as times:
        result = run_audit(config, out_dir=out)
    total = _since(start)
    phases.update({k: {"wall": v, "cpu": times.cpu[k]} for k, v in times.wall.items()})
    split = _metrics_split(result, phases["metrics"], config.audit.bootstrap, config.audit.seed)
    doc = {
        "seconds": total,
        "phases": phases,
        "metrics_split": split,
        "trained_models": sum(not r["cached"] for r in result.training),
        "imported": [name for name in HEAVY if name in sys.modules],
    }
    print(json.dumps(doc))


def _child(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def location(cache: Path, work: Path) -> dict:
    """(a): the cached rerun's phases and the wall time of the command."""
    run = _child(["--location-child", str(cache), str(work / "phases")])
    if run["trained_models"]:
        print(f"the cache {cache} lacked {run['trained_models']} models: trained them (untimed)")
        run = _child(["--location-child", str(cache), str(work / "phases")])
    cli = [sys.executable, "-c", "from mialens.cli import app; app()", "audit", str(EXAMPLE)]
    env = {**os.environ, "MIALENS_CACHE_DIR": str(cache)}
    out = ["--out", str(work / "cli"), "--quiet"]
    wall, cpu = time.perf_counter(), _children_cpu()
    subprocess.run([*cli, *out], check=True, env=env, stdout=subprocess.DEVNULL)
    run["command"] = {"wall": time.perf_counter() - wall, "cpu": _children_cpu() - cpu}
    print(f"the cached audit imported {', '.join(run['imported']) or 'none'} of {', '.join(HEAVY)}")
    return run


def synthetic_result(n_samples: int, n_targets: int, n_attacks: int, seed: int = 0):
    """A seeded audit result: half members per target (shuffled), attacks of growing
    strength, every third one with scores rounded to two decimals (ties)."""
    import numpy as np

    from mialens.audit.results import AuditResult

    gen = np.random.default_rng(seed)
    half = np.arange(n_samples) < n_samples // 2
    members = np.stack([gen.permutation(half) for _ in range(n_targets)])
    scores = {}
    for a in range(n_attacks):
        s = gen.normal(size=members.shape) + (0.2 + 0.2 * a) * members
        scores[f"attack_{a}"] = np.round(s, 2) if a % 3 == 2 else s
    info = {"summary": "synthetic", "paper": "none", "threat_model": "score"}
    return AuditResult(
        sample_ids=gen.permutation(n_samples) * 3 + 7,
        labels=gen.integers(0, 10, size=n_samples),
        members=members,
        target_models=list(range(n_targets)),
        scores=scores,
        attacks={name: {**info, "references": "none", "params": {}} for name in scores},
        fpr_levels=[0.1, 0.01, 0.001, 0.0001],
        design={"dataset": "synthetic", "num_models": n_targets, "pool_size": n_samples},
        config={"dataset": {"name": "synthetic"}},
    )


def synthetic(n_samples: int, n_targets: int, n_attacks: int) -> dict:
    """(b): metrics with bootstrap intervals and the report figures, by phase."""
    from mialens.report import plots
    from mialens.report.figure_data import audit_figures

    result = synthetic_result(n_samples, n_targets, n_attacks)
    seconds: dict[str, float] = {}
    _timed(seconds, "metrics_with_bootstrap", result.compute_metrics, N_BOOT, 0)
    seconds.update(_metrics_split(result, seconds["metrics_with_bootstrap"], N_BOOT, 0))
    figures = _timed(seconds, "figure_summaries", audit_figures, result)
    for fig, part in zip(
        (plots.roc_png, plots.histogram_png, plots.spread_png),
        (figures.roc, figures.histograms, figures.spread),
        strict=True,
    ):
        _timed(seconds, fig.__name__, fig, part)
    return {"samples": n_samples, "targets": n_targets, "attacks": n_attacks,
            "replicates": N_BOOT, "seconds": seconds}  # fmt: skip


def _table(doc: dict) -> None:
    rows = []
    if "location30" in doc:
        loc = doc["location30"]
        rows += [("location30", f"`mialens audit {EXAMPLE.name}` (cached)", loc["command"])]
        rows += [("location30", f"in process: {k}", v) for k, v in loc["phases"].items()]
        rows += [("location30", f"metrics: {k}", v) for k, v in loc["metrics_split"].items()]
    if "synthetic" in doc:
        rows += [("synthetic", k, v) for k, v in doc["synthetic"]["seconds"].items()]
    print(f"{'setup':<11} {'phase':<44} {'wall s':>8} {'CPU s':>8}")
    for setup, name, value in rows:
        print(f"{setup:<11} {name:<44} {value['wall']:>8.2f} {value['cpu']:>8.2f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--location-child":
        location_child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    cache_help = "model cache of (a) (default: $MIALENS_CACHE_DIR, else mialens's)"
    parser.add_argument("--cache", type=Path, default=None, help=cache_help)
    parser.add_argument("--only", choices=("location30", "synthetic"), default=None)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--targets", type=int, default=64)
    parser.add_argument("--attacks", type=int, default=10)
    args = parser.parse_args()
    doc: dict = {"machine": platform.platform(), "cpu_count": os.cpu_count()}
    if args.only in (None, "location30"):
        from mialens.models.store import default_cache_dir

        cache = args.cache or default_cache_dir()
        doc["location30"] = location(cache, Path(tempfile.mkdtemp(prefix="mialens-overhead-")))
    if args.only in (None, "synthetic"):
        doc["synthetic"] = synthetic(args.samples, args.targets, args.attacks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    _table(doc)


if __name__ == "__main__":
    main()
