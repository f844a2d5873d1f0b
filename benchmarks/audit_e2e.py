"""End-to-end wall time and peak memory of the Location30 example audit.

Runs ``examples/location30.yaml`` (16 MLPs, every default attack) in fresh processes:
``cold`` (empty model cache: train everything), ``cached`` (the same cache again: load
logits, score), ``cold_one_by_one`` (ensemble training off) and, with ``--ray``,
``cold_ray`` (a local Ray instance, empty cache), whose metrics are compared with the
local run's. Records each run's wall time (including imports and data loading) and the
process's peak resident memory. Needs Location30 (``$MIALENS_DATA_DIR``).

    MIALENS_DATA_DIR=../shared/data python benchmarks/audit_e2e.py --ray \
        --out results/audit_e2e.json
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


def child(cache: str, out: str, overrides: list[str]) -> None:
    """Run the audit in this process and print its wall time and peak memory as JSON."""
    start = time.perf_counter()
    from mialens.workflows.audit import run_audit
    from mialens.workflows.config import load_config

    config = load_config(EXAMPLE, [f"audit.cache_dir={cache}", *overrides])
    result = run_audit(config, out_dir=out)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "cached_models": sum(r["cached"] for r in result.training),
            }
        )
    )


def run(name: str, cache: Path, out: Path, overrides: list[str], threads: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", str(cache), str(out), *overrides]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch's threads (Ray sets its workers' own)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    record["overrides"] = overrides
    print(f"{name:<16} {record['seconds']:>9.1f} s {record['peak_rss_mb']:>9.0f} MB", flush=True)
    return record


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--ray", action="store_true", help="also run on a local Ray instance")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    t = args.threads

    work = Path(tempfile.mkdtemp(prefix="mialens-e2e-"))
    print(f"{'run':<16} {'wall time':>11} {'peak memory':>12}")
    runs = {
        "cold": run("cold", work / "cache", work / "cold", [], t),
        "cached": run("cached", work / "cache", work / "cached", [], t),
        "cold_one_by_one": run(
            "cold_one_by_one", work / "cache1", work / "single", ["executor.ensemble=off"], t
        ),
    }
    metrics = {
        name: json.loads((work / folder / "metrics.json").read_text())["attacks"]
        for name, folder in (("cold", "cold"), ("cached", "cached"))
    }
    result: dict = {
        "runs": runs,
        "torch_threads": t,
        "cached_metrics_equal_cold": metrics["cold"] == metrics["cached"],
    }
    if args.ray:
        ray = ["executor.kind=ray"]
        runs["cold_ray"] = run("cold_ray", work / "cache_ray", work / "ray", ray, t)
        on_ray = json.loads((work / "ray" / "metrics.json").read_text())["attacks"]
        result["ray_metrics_equal_local"] = on_ray == metrics["cold"]
    result["speedup_cold_vs_one_by_one"] = (
        runs["cold_one_by_one"]["seconds"] / runs["cold"]["seconds"]
    )
    result["machine"] = platform.platform()
    result["cpu_count"] = os.cpu_count()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for key in ("cached_metrics_equal_cold", "ray_metrics_equal_local"):
        if key in result:
            print(f"{key}: {result[key]}")


if __name__ == "__main__":
    main()
