"""Gradient boosting next to the MLP on tabular data: audit time, TPR at low FPR, accuracy.

For Location30 (``$MIALENS_DATA_DIR``) and scikit-learn's digits (bundled, 64 pixel
features used as a table), audits scikit-learn's ``HistGradientBoostingClassifier`` with
its defaults and the MLP recipe of ``examples/location30.yaml`` (446-256-30, Adam, 30
epochs) in the same design: ``--models`` models on complementary halves of the pool
(Location30: ``--pool``; digits: ``--digits-pool``), the attacks LOSS, LiRA online and
offline and RMIA online, 200 bootstrap replicates. Records each audit's wall time (and its
phases: ``load`` trains or loads), how many models were already in the model store, the
test accuracy, and every attack's TPR at 1% and 0.1% FPR: the mean over targets with its
interval over targets (``ci``) and the bootstrap interval; ``resolved`` is False where a
target's non-members are too few to place that FPR.

Models and estimator predictions go to the model store (``--cache``, default
``$MIALENS_CACHE_DIR``), so an interrupted run resumes (the wall time of a resumed audit
then counts only what was left to train).

    MIALENS_DATA_DIR=/work/shared/data python benchmarks/tabular.py \\
        --out results/tabular.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import yaml

from mialens.workflows.audit import run_audit
from mialens.workflows.config import validate_config
from mialens.workflows.phases import timed_phases

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "location30.yaml"
ATTACKS = ["loss", "lira_online", "lira_offline", "rmia_online"]
FPRS = ("0.01", "0.001")
HGB = {"estimator": "sklearn.ensemble:HistGradientBoostingClassifier"}


def learners() -> dict[str, dict[str, Any]]:
    """Each audited learner's ``model`` (and ``train``) sections."""
    example = yaml.safe_load(EXAMPLE.read_text())
    return {
        "hgb": {"model": HGB},
        "mlp": {"model": example["model"], "train": example["train"]},
    }


def audit_config(dataset: str, learner: dict, models: int, pool: int, cache: str | None):
    audit = {"num_models": models, "seed": 0, "pool_size": pool, "attacks": ATTACKS}
    audit["fpr"] = [float(f) for f in FPRS]
    if cache:
        audit["cache_dir"] = cache
    return validate_config({"dataset": {"name": dataset}, **learner, "audit": audit})


def tpr_entry(stat: dict[str, Any]) -> dict[str, Any]:
    return {
        "mean": stat["mean"],
        "ci": [stat["ci_low"], stat["ci_high"]],
        "bootstrap": [stat["bootstrap"]["low"], stat["bootstrap"]["high"]]
        if stat.get("bootstrap")
        else None,
        "resolved": stat.get("resolved", True),
    }


def run_one(dataset: str, name: str, learner: dict, args: argparse.Namespace) -> dict[str, Any]:
    pool = args.pool if dataset == "location30" else args.digits_pool
    config = audit_config(dataset, learner, args.models, pool, args.cache)
    start = time.perf_counter()
    with timed_phases() as phases:
        result = run_audit(config)
    seconds = time.perf_counter() - start
    doc = result.to_json()
    test = doc["utility"]["test_accuracy"]
    return {
        "dataset": dataset,
        "learner": name,
        "models": args.models,
        "pool": pool,
        "audit_seconds": seconds,
        "phase_seconds": dict(phases.wall),
        "cached_models": sum(bool(r.get("cached")) for r in doc["training"]),
        "test_accuracy": {"mean": test["mean"], "ci": [test["ci_low"], test["ci_high"]]},
        "attacks": {
            attack: {f"tpr@{f}": tpr_entry(m["tpr_at_fpr"][f]) for f in FPRS}
            for attack, m in doc["attacks"].items()
        },
    }


def _cell(entry: dict[str, Any]) -> str:
    low, high = entry["ci"]
    flag = "" if entry["resolved"] else "*"
    return f"{100 * entry['mean']:5.2f}{flag} [{100 * low:.2f}, {100 * high:.2f}]"


def print_table(rows: list[dict[str, Any]]) -> None:
    """One line per audit and attack: TPR (%) at each FPR with its interval over targets."""
    head = f"{'dataset':<11} {'learner':<5} {'time s':>7} {'test acc':>8} {'attack':<13}"
    print(head + "".join(f" {'TPR@' + f + ' % [ci]':>24}" for f in FPRS))
    for row in rows:
        for i, (attack, tprs) in enumerate(row["attacks"].items()):
            first = i == 0
            lead = (
                f"{row['dataset']:<11} {row['learner']:<5} {row['audit_seconds']:>7.1f} "
                f"{row['test_accuracy']['mean']:>8.3f}"
                if first
                else " " * 34
            )
            print(f"{lead} {attack:<13}" + "".join(f" {_cell(tprs[f'tpr@{f}']):>24}" for f in FPRS))
    print("(* not resolved: too few non-members per target for that FPR)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--models", type=int, default=8, help="models per audit (default 8)")
    parser.add_argument("--pool", type=int, default=2000, help="Location30 pool (default 2000)")
    parser.add_argument("--digits-pool", type=int, default=1000, help="digits pool (1000)")
    parser.add_argument("--datasets", nargs="+", default=["location30", "digits"])
    parser.add_argument("--learners", nargs="+", default=["hgb", "mlp"], choices=["hgb", "mlp"])
    parser.add_argument("--cache", default=None, help="model store (default $MIALENS_CACHE_DIR)")
    args = parser.parse_args()

    doc: dict[str, Any] = {
        "attacks": ATTACKS,
        "fpr": list(FPRS),
        "rows": [],
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets:
        for name in args.learners:
            print(f"auditing {name} on {dataset} ...", flush=True)
            doc["rows"].append(run_one(dataset, name, learners()[name], args))
            args.out.write_text(json.dumps(doc, indent=2) + "\n")  # after every audit
    print_table(doc["rows"])


if __name__ == "__main__":
    main()
