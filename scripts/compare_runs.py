"""Compare two audit run folders: metrics.json, samples.csv and analysis/samples.csv.

    python scripts/compare_runs.py BEFORE_DIR AFTER_DIR

metrics.json is compared as parsed JSON, apart from what differs between two runs of the
same configuration: the creation time, the environment (package versions), the cache
folder, whether a model came from the cache, and timings (keys containing "seconds").
The CSV files are compared byte for byte. Exits 1 on any difference.
"""

import json
import sys
from pathlib import Path

VOLATILE = {"created", "environment", "cache_dir", "cached"}
FILES = ("metrics.json", "samples.csv", "analysis/samples.csv")


def stable(obj):
    """``obj`` without the keys that differ between two runs of one configuration."""
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in obj.items() if k not in VOLATILE and "seconds" not in k}
    if isinstance(obj, list):
        return [stable(v) for v in obj]
    return obj


def differences(a, b, path="$"):
    """Every path at which the JSON values ``a`` and ``b`` differ."""
    if type(a) is not type(b):
        yield f"{path}: {a!r} != {b!r}"
    elif isinstance(a, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                yield f"{path}.{k}: only in {'after' if k in b else 'before'}"
            else:
                yield from differences(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        if len(a) != len(b):
            yield f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            yield from differences(x, y, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: {a!r} != {b!r}"


def main(before: str, after: str) -> int:
    problems = []
    for name in FILES:
        b, a = Path(before) / name, Path(after) / name
        if not b.exists() and not a.exists():
            continue
        if not b.exists() or not a.exists():
            problems.append(f"{name}: exists only in {'after' if a.exists() else 'before'}")
            continue
        if name.endswith(".json"):
            old, new = (stable(json.loads(p.read_text(encoding="utf-8"))) for p in (b, a))
            found = list(differences(old, new))
            problems += [f"{name} {d}" for d in found[:20]]
            status = "identical" if not found else f"{len(found)} differences"
        else:
            same = b.read_bytes() == a.read_bytes()
            problems += [] if same else [f"{name}: bytes differ"]
            status = "identical" if same else "DIFFERENT"
        print(f"{name:24s} {status}")
    for problem in problems:
        print("  ", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
