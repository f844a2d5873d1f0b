"""Reference models per hour of a WRN on Fashion-MNIST, ensemble versus one by one, and
the audit the models feed (LiRA online versus LOSS at 1% FPR).

CPU (default): ``examples/fashion_mnist_wrn.yaml``, WRN-16-2, a 5,000-image pool, 8
models. ``--device cuda``: WRN-16-4, a 10,000-image pool, 16 models, bfloat16 autocast.
The audit runs through the model store (``audit.cache_dir``, default
``$MIALENS_CACHE_DIR``), so an interrupted run resumes with the models already trained.

Records the audit's wall time; models per hour (from the training seconds of the models
trained in this run, or as the store recorded them when all were cached); each model's
test accuracy; the TPR at 1% FPR of LiRA online and of LOSS and their ratio; the
achieved fraction of the device's peak (training FLOPs, three forward passes per
sample, over the training seconds, against the device's measured dense matrix-multiply
rate: float32 on one CPU thread, which is what training runs on, or bfloat16 on CUDA,
with the datasheet peak where the GPU is known); and ensemble versus one-by-one training
of the same models on a slice of the pool (models per hour, accuracy, largest weight
difference).

    python benchmarks/wrn_fashion.py --out results/wrn_fashion.json
    python benchmarks/wrn_fashion.py --device cuda --out results/wrn_fashion_cuda.json
    python benchmarks/wrn_fashion.py --smoke --out /tmp/wrn_smoke.json  # a few minutes
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

from mialens.audit.budget import forward_flops
from mialens.audit.design import prepare_audit
from mialens.models.ensemble import train_ensemble
from mialens.models.training import fixed_threads, predict_logits, train_model
from mialens.workflows.audit import run_audit
from mialens.workflows.config import load_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fashion_mnist_wrn.yaml"
CUDA = [
    "model.widen=4",
    "audit.pool_size=10000",
    "audit.num_models=16",
    "audit.device=cuda",
    "train.mixed_precision=true",
]
SMOKE = ["train.epochs=1", "audit.num_models=4", "audit.pool_size=500", "audit.test_size=500"]
# dense bfloat16 tensor-core peaks from the vendor's datasheets (FLOP/s)
DATASHEET_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12}


def measured_peak(device: str, repeats: int = 10) -> float:
    """Best dense matrix-multiply rate in FLOP/s: float32 on the training thread count on
    a CPU, bfloat16 on CUDA."""
    cuda = device.startswith("cuda")
    n, dtype = (8192, torch.bfloat16) if cuda else (2048, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    with fixed_threads():
        for i in range(repeats + 3):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            a @ b
            if cuda:
                torch.cuda.synchronize()
            if i >= 3:  # warm-up first
                best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def device_peaks(device: str) -> dict:
    peaks = {"measured_matmul_flops": measured_peak(device)}
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
        peaks["gpu"] = name
        peaks["datasheet_bf16_flops"] = next(
            (v for k, v in DATASHEET_BF16.items() if k in name), None
        )
    return peaks


def fraction_of_peak(flops: float, seconds: float, peaks: dict) -> dict:
    rate = flops / seconds if seconds > 0 else float("nan")
    out = {"achieved_flops": rate, "of_measured_matmul": rate / peaks["measured_matmul_flops"]}
    if peaks.get("datasheet_bf16_flops"):
        out["of_datasheet_bf16"] = rate / peaks["datasheet_bf16_flops"]
    return out


def training_flops(setup, models: int, samples: int, epochs: int) -> float:
    """Training FLOPs: three forward passes' worth (forward, input and weight gradients)."""
    model = setup.plan.build()
    per_sample = forward_flops(model, tuple(setup.dataset.input_shape))
    return 3.0 * per_sample * samples * epochs * models


def tpr_at(result, attack: str, fpr: float = 0.01) -> float:
    return float(result.metrics[attack].at(fpr).mean)


def audit(config, out_dir: Path, peaks: dict) -> dict:
    """Run (or resume) the audit and summarise its models and its two attacks."""
    start = time.perf_counter()
    result = run_audit(config, out_dir=out_dir)
    wall = time.perf_counter() - start
    trained = [r for r in result.training if not r["cached"]]
    timed = trained or result.training  # all cached: the seconds the store recorded
    seconds = sum(r["seconds"] for r in timed)
    setup = prepare_audit(config)
    samples = int(np.mean([len(p) for p in setup.plan.train_positions]))
    flops = training_flops(setup, len(timed), samples, config.train.epochs)
    lira, loss = tpr_at(result, "lira_online"), tpr_at(result, "loss")
    accuracy = result.utility["test_accuracy"]
    return {
        "wall_seconds": wall,
        "models": len(result.training),
        "models_trained_now": len(trained),
        "training_seconds": seconds,
        "models_per_hour": len(timed) / seconds * 3600 if seconds else None,
        "timing_source": "trained in this run" if trained else "as stored (all cached)",
        "test_accuracy_per_model": accuracy["per_target"],
        "test_accuracy_mean": accuracy["mean"],
        "train_samples_per_model": samples,
        "tpr_at_1pct": {"lira_online": lira, "loss": loss},
        "lira_over_loss": lira / loss if loss > 0 else float("inf"),
        "peak": fraction_of_peak(flops, seconds, peaks),
        "metrics_json": str(out_dir / "metrics.json"),
    }


def ensemble_vs_single(config, models: int, size: int, epochs: int, peaks: dict) -> dict:
    """Train the same ``models`` models on ``size`` samples each both ways."""
    setup = prepare_audit(config)
    plan, ds, device = setup.plan, setup.dataset, config.audit.device
    recipe = plan.train.model_copy(update={"epochs": epochs})
    subsets = [p[:size] for p in plan.train_positions[:models]]
    size = int(np.mean([len(s) for s in subsets]))  # a small pool may have fewer
    seeds = plan.seeds[:models]
    x_test, y_test = ds.x[setup.split.test], ds.y[setup.split.test]
    start = time.perf_counter()
    batched = train_ensemble(plan.build, ds.x, ds.y, subsets, recipe, seeds, device=device)
    ensemble_s = time.perf_counter() - start
    start = time.perf_counter()
    single = [
        train_model(plan.build, ds.x[s], ds.y[s], recipe, seed, device=device)
        for s, seed in zip(subsets, seeds, strict=True)
    ]
    single_s = time.perf_counter() - start

    def accuracy(state) -> float:
        model = plan.build().to(device)
        model.load_state_dict(state)
        return float((predict_logits(model, x_test).argmax(1) == y_test).mean())

    flops = training_flops(setup, models, size, epochs)
    return {
        "models": models,
        "samples_per_model": size,
        "epochs": epochs,
        "ensemble_seconds": ensemble_s,
        "one_by_one_seconds": single_s,
        "ensemble_models_per_hour": models / ensemble_s * 3600,
        "one_by_one_models_per_hour": models / single_s * 3600,
        "speedup": single_s / ensemble_s,
        "ensemble_peak": fraction_of_peak(flops, ensemble_s, peaks),
        "one_by_one_peak": fraction_of_peak(flops, single_s, peaks),
        "accuracy_ensemble": [accuracy(r.state_dict) for r in batched],
        "accuracy_one_by_one": [accuracy(r.state_dict) for r in single],
        "max_weight_difference": max(
            float((a.state_dict[k] - b.state_dict[k]).abs().max())
            for a, b in zip(batched, single, strict=True)
            for k in a.state_dict
        ),
    }


def print_table(result: dict) -> None:
    a, e = result["audit"], result["ensemble_vs_one_by_one"]
    rows = [
        ("models (trained now)", f"{a['models']} ({a['models_trained_now']})"),
        ("audit wall time", f"{a['wall_seconds'] / 60:.1f} min"),
        ("models per hour", f"{a['models_per_hour']:.1f} ({a['timing_source']})"),
        ("fraction of measured peak", f"{a['peak']['of_measured_matmul']:.3f}"),
        ("test accuracy, mean", f"{a['test_accuracy_mean']:.4f}"),
        ("test accuracy per model", " ".join(f"{v:.3f}" for v in a["test_accuracy_per_model"])),
        ("TPR@1% LiRA online", f"{a['tpr_at_1pct']['lira_online']:.4f}"),
        ("TPR@1% LOSS", f"{a['tpr_at_1pct']['loss']:.4f}"),
        ("LiRA / LOSS", f"{a['lira_over_loss']:.2f}"),
        ("slice: ensemble models/h", f"{e['ensemble_models_per_hour']:.1f}"),
        ("slice: one-by-one models/h", f"{e['one_by_one_models_per_hour']:.1f}"),
        ("slice: speed-up", f"{e['speedup']:.2f}"),
        ("slice: max weight difference", f"{e['max_weight_difference']:.2e}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: WRN-16-4, 16 models")
    parser.add_argument("--smoke", action="store_true", help="1 epoch, 4 models, 500 images")
    parser.add_argument("--set", action="append", default=[], help="further overrides")
    parser.add_argument("--slice-models", type=int, default=4)
    parser.add_argument("--slice-size", type=int, default=512, help="samples per model")
    parser.add_argument("--slice-epochs", type=int, default=1)
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    overrides = (CUDA if cuda else []) + (SMOKE if args.smoke else []) + args.set
    config = load_config(EXAMPLE, overrides)
    peaks = device_peaks(args.device)
    run_dir = args.out.with_name(args.out.stem + "_run")
    result = {
        "overrides": overrides,
        "device": args.device,
        "peaks": peaks,
        "audit": audit(config, run_dir, peaks),
        "ensemble_vs_one_by_one": ensemble_vs_single(
            config, args.slice_models, args.slice_size, args.slice_epochs, peaks
        ),
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)


if __name__ == "__main__":
    main()
