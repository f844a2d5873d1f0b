"""Write an audit's outputs: metrics.json, samples.csv and report.html.

Each file is written atomically, so a killed run never leaves a truncated result.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from mialens.audit.results import AuditResult
from mialens.io import write_json, write_text

METRICS_FILE = "metrics.json"
SAMPLES_FILE = "samples.csv"
REPORT_FILE = "report.html"


def samples_table(result: AuditResult) -> str:
    """The per-sample table as CSV text, one row per (sample, target).

    Columns: ``sample_id``, ``label``, ``target`` (model index), ``member`` (0/1), then
    one column per attack holding that attack's score of the sample against the target
    (higher = more likely member). Scores keep full float64 precision.
    """
    names = list(result.scores)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["sample_id", "label", "target", "member", *names])
    ids = [str(v) for v in result.sample_ids.tolist()]
    labels = result.labels.tolist()
    for row, target in enumerate(result.target_models):
        member = result.members[row].astype(int).tolist()
        cols = [[repr(float(v)) for v in result.scores[n][row]] for n in names]
        for i in range(len(ids)):
            writer.writerow([ids[i], labels[i], target, member[i], *(c[i] for c in cols)])
    return buf.getvalue()


def write_outputs(result: AuditResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the three outputs into ``out_dir`` (created if needed); returns their paths."""
    from mialens.report.html import render_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out / METRICS_FILE,
        "samples": out / SAMPLES_FILE,
        "report": out / REPORT_FILE,
    }
    write_json(paths["metrics"], result.to_dict())
    write_text(paths["samples"], samples_table(result))
    write_text(paths["report"], render_report(result))
    return paths


def read_samples(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a samples.csv back into columns (ids as strings, scores as float64)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    columns = list(zip(*body, strict=True)) if body else [() for _ in header]
    out: dict[str, np.ndarray] = {}
    for name, col in zip(header, columns, strict=True):
        if name == "sample_id":
            out[name] = np.array(col, dtype=str)
        elif name in ("label", "target", "member"):
            out[name] = np.array(col, dtype=np.int64)
        else:
            out[name] = np.array(col, dtype=np.float64)
    return out
