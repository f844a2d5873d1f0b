"""A record of expected numbers: orderings and tie limits that a later change must keep.

Audits at the defaults and checks, on the resulting metrics (``AuditResult.metrics``):

- ``rmia_vs_lira``: RMIA online's mean TPR at 1% FPR is at least 0.95 x LiRA online's
  (Zarifzadeh et al. 2024 report RMIA >= LiRA with few reference models);
- ``ties``: no attack has more than 1% of a target's scores in one tie group, unless
  its score is discrete by nature (``Attack.discrete_scores``: gap, Attack-R, ...); the
  FPR levels such ties make unreachable (``reachable: false``) are listed.

By default it runs the digits demo (bundled, offline) and, when Location30 is found
(``$MIALENS_DATA_DIR``), ``examples/location30.yaml``; ``--run DIR`` checks finished runs
instead. Exits 1 when an expectation fails.

    MIALENS_DATA_DIR=../shared/data python benchmarks/expected_numbers.py --out expected.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mialens.metrics.leakage import AttackLeakage

ROOT = Path(__file__).resolve().parents[1]
RMIA_OVER_LIRA = 0.95  # RMIA online TPR@1% >= this x LiRA online's
MAX_TIE_SHARE = 0.01  # largest tie group of a continuous score, as a share of scores
LEVEL = 0.01


def check(metrics: dict[str, AttackLeakage]) -> dict[str, Any]:
    """The expectations on the metrics of one audit: each with its numbers and ``ok``."""
    from mialens.attacks.registry import attack_class
    from mialens.metrics.leakage import fpr_key

    checks: dict[str, Any] = {}
    if "rmia_online" in metrics and "lira_online" in metrics:
        rmia = metrics["rmia_online"].at(LEVEL).mean
        lira = metrics["lira_online"].at(LEVEL).mean
        checks["rmia_vs_lira"] = {
            "rmia_online": rmia,
            "lira_online": lira,
            "ratio": rmia / lira if lira else None,
            "ok": rmia >= RMIA_OVER_LIRA * lira,
        }
    ties = {}
    for name, m in metrics.items():
        share = m.tie_share.max
        discrete = attack_class(name).discrete_scores
        ties[name] = {
            "tie_share": share,
            "discrete": discrete,
            "unreachable_levels": [
                fpr_key(lv) for lv, e in m.tpr_at_fpr.items() if not e.reachable
            ],
            "ok": share <= MAX_TIE_SHARE or discrete,
        }
    checks["ties"] = {"attacks": ties, "ok": all(t["ok"] for t in ties.values())}
    return checks


def audit(config_path: Path, out: Path, overrides: list[str]) -> dict[str, Any]:
    from mialens.workflows.audit import run_audit
    from mialens.workflows.config import load_config

    start = time.perf_counter()
    result = run_audit(load_config(config_path, overrides), out_dir=out)
    return {"seconds": time.perf_counter() - start, "checks": check(result.metrics)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--run", type=Path, action="append", default=[], help="finished run")
    args = parser.parse_args()

    from mialens.errors import DataError, DownloadError
    from mialens.workflows.outputs import load_result

    results: dict[str, Any] = {}
    if args.run:
        for run in args.run:
            results[str(run)] = {"checks": check(load_result(run).metrics)}
    else:
        work = Path(tempfile.mkdtemp(prefix="mialens-expected-"))
        demo = ROOT / "src" / "mialens" / "configs" / "demo.yaml"
        results["digits_demo"] = audit(demo, work / "demo", [])
        try:
            results["location30"] = audit(ROOT / "examples" / "location30.yaml", work / "loc", [])
        except (DataError, DownloadError) as exc:
            print(f"location30 skipped: {exc}", file=sys.stderr)
    print(f"{'run':<14} {'check':<14} {'ok':<5} numbers")
    for run, record in results.items():
        for name, entry in record["checks"].items():
            numbers = (
                f"rmia {entry['rmia_online']:.3f} / lira {entry['lira_online']:.3f}"
                if name == "rmia_vs_lira"
                else ", ".join(
                    f"{a} {t['tie_share']:.3f}"
                    for a, t in entry["attacks"].items()
                    if t["tie_share"] > MAX_TIE_SHARE
                )
            )
            print(f"{run:<14} {name:<14} {entry['ok']!s:<5} {numbers}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(c["ok"] for r in results.values() for c in r["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
