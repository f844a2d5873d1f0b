"""Training throughput: batched ensembles versus one model at a time.

Trains the reference models of the Location30 example audit (MLP 446-256-30, Adam,
batch 64) at K = 16 and K = 64, once as batched ensembles and once one by one with the
same data, seeds and recipe, and records models per second, the speed-up, the test
accuracy of every model under both trainers, and the achieved fraction of this
machine's matrix-multiply FLOP rate (measured here with torch). Needs Location30
(``$MIALENS_DATA_DIR``).

    MIALENS_DATA_DIR=../shared/data python benchmarks/train_throughput.py \
        --out results/train_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mialens.audit.design import prepare_audit
from mialens.models.ensemble import train_ensemble
from mialens.models.training import predict_logits, train_model
from mialens.workflows.config import load_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "location30.yaml"


def matmul_flops(n: int = 2048, repeats: int = 10) -> float:
    """Best float32 matrix-multiply rate of this machine in FLOP/s (torch, all threads)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def training_flops_per_sample(model: nn.Module) -> int:
    """FLOPs of one training sample through the MLP's linear layers: the forward pass,
    the weight gradients, and the input gradients of every layer but the first."""
    sizes = [m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    return 2 * (2 * sum(sizes) + sum(sizes[1:]))


def test_accuracy(plan, state, x_test, y_test) -> float:
    model = plan.build()
    model.load_state_dict(state)
    return float((predict_logits(model, x_test).argmax(1) == y_test).mean())


def run(k: int, epochs: int, repeats: int) -> dict:
    config = load_config(EXAMPLE, [f"audit.num_models={k}", f"train.epochs={epochs}"])
    setup = prepare_audit(config)
    plan, ds = setup.plan, setup.dataset
    x_test, y_test = ds.x[setup.split.test], ds.y[setup.split.test]
    positions = plan.train_positions
    ensemble_s, single_s = [], []
    for _ in range(repeats):  # interleaved, so that load from other processes hits both
        start = time.perf_counter()
        batched = train_ensemble(plan.build, ds.x, ds.y, positions, plan.train, plan.seeds)
        ensemble_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        single = [
            train_model(plan.build, ds.x[p], ds.y[p], plan.train, s)
            for p, s in zip(positions, plan.seeds, strict=True)
        ]
        single_s.append(time.perf_counter() - start)
    acc_batched = [test_accuracy(plan, r.state_dict, x_test, y_test) for r in batched]
    acc_single = [test_accuracy(plan, r.state_dict, x_test, y_test) for r in single]
    weight_diff = max(
        float((a.state_dict[n] - b.state_dict[n]).abs().max())
        for a, b in zip(batched, single, strict=True)
        for n in a.state_dict
    )
    flops = training_flops_per_sample(plan.build()) * epochs * sum(len(p) for p in positions)
    t_ens, t_one = min(ensemble_s), min(single_s)
    return {
        "models": k,
        "epochs": epochs,
        "ensemble_seconds": t_ens,
        "one_by_one_seconds": t_one,
        "ensemble_models_per_second": k / t_ens,
        "one_by_one_models_per_second": k / t_one,
        "speedup": t_one / t_ens,
        "ensemble_flops_per_second": flops / t_ens,
        "one_by_one_flops_per_second": flops / t_one,
        "all_ensemble_seconds": ensemble_s,
        "all_one_by_one_seconds": single_s,
        "test_accuracy_ensemble": _describe(acc_batched),
        "test_accuracy_one_by_one": _describe(acc_single),
        "max_test_accuracy_difference": float(np.max(np.abs(np.subtract(acc_batched, acc_single)))),
        "models_with_equal_test_accuracy": int(np.sum(np.equal(acc_batched, acc_single))),
        "max_weight_difference": weight_diff,
    }


def _describe(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values)
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std()),
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--models", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=1, help="timings keep the fastest run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    peak = matmul_flops()
    runs = {k: run(k, args.epochs, args.repeats) for k in args.models}
    result: dict = {"matmul_flops_per_second": peak, "torch_threads": torch.get_num_threads()}
    for k, entry in runs.items():
        result[f"speedup_k{k}"] = entry["speedup"]
        result[f"ensemble_flop_fraction_k{k}"] = entry["ensemble_flops_per_second"] / peak
        result[f"one_by_one_flop_fraction_k{k}"] = entry["one_by_one_flops_per_second"] / peak
    result["runs"] = {str(k): v for k, v in runs.items()}
    result["machine"] = platform.platform()
    result["cpu_count"] = os.cpu_count()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"matmul rate: {peak / 1e9:.1f} GFLOP/s ({result['torch_threads']} threads)")
    header = (
        f"{'K':>4} {'ensemble models/s':>18} {'one-by-one models/s':>20} {'speed-up':>9} "
        f"{'ens. FLOP %':>11} {'1x1 FLOP %':>10} {'acc ens.':>9} {'acc 1x1':>8}"
    )
    print(header)
    for k, e in runs.items():
        print(
            f"{k:>4} {e['ensemble_models_per_second']:>18.2f} "
            f"{e['one_by_one_models_per_second']:>20.2f} {e['speedup']:>9.2f} "
            f"{100 * e['ensemble_flops_per_second'] / peak:>11.1f} "
            f"{100 * e['one_by_one_flops_per_second'] / peak:>10.1f} "
            f"{e['test_accuracy_ensemble']['mean']:>9.4f} "
            f"{e['test_accuracy_one_by_one']['mean']:>8.4f}"
        )


if __name__ == "__main__":
    main()
