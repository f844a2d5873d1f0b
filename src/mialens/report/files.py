"""Write an audit's outputs (metrics.json, samples.csv, report.html) and read them back.

Each file is written atomically, so a killed run never leaves a truncated result.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mialens.audit.results import AuditResult
from mialens.errors import DataError
from mialens.io import write_json, write_text

METRICS_FILE = "metrics.json"
SAMPLES_FILE = "samples.csv"
REPORT_FILE = "report.html"


def samples_table(result: AuditResult) -> str:
    """The per-sample table as CSV text, one row per (sample, target).

    Columns: ``sample_id``, ``label`` (the user's original label when the data set's
    labels were remapped to classes 0..C-1), ``target`` (model index), ``member`` (0/1), then
    one column per attack holding that attack's score of the sample against the target
    (higher = more likely member). Scores keep full float64 precision.
    """
    names = list(result.scores)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["sample_id", "label", "target", "member", *names])
    ids = [str(v) for v in result.sample_ids.tolist()]
    labels = result.labels.tolist()
    values = result.design.get("label_values")
    if values is not None:
        labels = [values[c] for c in labels]
    for row, target in enumerate(result.target_models):
        member = result.members[row].astype(int).tolist()
        cols = [[repr(float(v)) for v in result.scores[n][row]] for n in names]
        for i in range(len(ids)):
            writer.writerow([ids[i], labels[i], target, member[i], *(c[i] for c in cols)])
    return buf.getvalue()


def table_csv(columns: dict[str, np.ndarray]) -> str:
    """Equal-length columns as CSV text: floats at full precision (``nan`` when undefined),
    integers and strings as they are."""
    names = list(columns)
    cells = []
    for name in names:
        col = np.asarray(columns[name])
        if col.dtype.kind == "f":
            cells.append([repr(float(v)) for v in col.tolist()])
        else:
            cells.append([str(v) for v in col.tolist()])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(zip(*cells, strict=True))
    return buf.getvalue()


def write_report(
    result: AuditResult, out_dir: str | os.PathLike, analysis: dict[str, Any] | None = None
) -> Path:
    """(Re)write ``report.html``; with an analysis summary it links the analysis report."""
    from mialens.report.html import render_report

    path = Path(out_dir) / REPORT_FILE
    write_text(path, render_report(result, analysis))
    return path


def write_outputs(
    result: AuditResult, out_dir: str | os.PathLike, analysis: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write the three outputs into ``out_dir`` (created if needed); returns their paths.

    ``analysis`` is the summary of a leakage analysis written beside them, which the
    report then summarises and links."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out / METRICS_FILE,
        "samples": out / SAMPLES_FILE,
        "report": out / REPORT_FILE,
    }
    write_json(paths["metrics"], result.to_dict())
    write_text(paths["samples"], samples_table(result))
    write_report(result, out, analysis)
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
        elif name == "label":  # class indices, or the user's original labels
            out[name] = _ints_or_strings(col)
        elif name in ("target", "member"):
            out[name] = np.array(col, dtype=np.int64)
        else:
            out[name] = np.array(col, dtype=np.float64)
    return out


def _ints_or_strings(col: tuple[str, ...]) -> np.ndarray:
    try:
        return np.array(col, dtype=np.int64)
    except ValueError:
        return np.array(col, dtype=str)


def _class_indices(labels: np.ndarray, values: list[str] | None) -> np.ndarray:
    """The class index of each label of samples.csv (original labels mapped back)."""
    if values is None:
        return labels.astype(np.int64)
    index = {v: c for c, v in enumerate(values)}
    return np.array([index[str(v)] for v in labels.tolist()], dtype=np.int64)


_METRIC_KEYS = ("auc", "advantage", "tpr_at_fpr", "bootstrap_replicates", "canaries")


def load_result(run_dir: str | os.PathLike) -> AuditResult:
    """The :class:`AuditResult` of a run folder, from its ``metrics.json`` and ``samples.csv``."""
    run = Path(run_dir)
    paths = [run / METRICS_FILE, run / SAMPLES_FILE]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{run} is not an audit run folder: {', '.join(missing)} missing (write one with "
            "`mialens audit CONFIG --out DIR`)"
        )
    try:
        doc = json.loads(paths[0].read_text(encoding="utf-8"))
        table = read_samples(paths[1])
        return _result_from(doc, table, paths[1])
    except DataError:
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        # a truncated or foreign file: missing keys or columns, no rows, wrong types
        raise DataError(f"cannot read the audit run in {run}: {type(exc).__name__}: {exc}") from exc


def _result_from(doc: dict[str, Any], table: dict[str, np.ndarray], samples: Path) -> AuditResult:
    targets = list(dict.fromkeys(table["target"].tolist()))
    if not targets:
        raise ValueError(f"{samples} has no rows")
    rows = [table["target"] == t for t in targets]
    ids = table["sample_id"][rows[0]]
    if any(not np.array_equal(table["sample_id"][r], ids) for r in rows):
        raise DataError(f"{samples}: the targets do not list the same samples in one order")
    attacks = doc["attacks"]
    return AuditResult(
        sample_ids=ids,
        labels=_class_indices(table["label"][rows[0]], doc.get("design", {}).get("label_values")),
        members=np.stack([table["member"][r].astype(bool) for r in rows]),
        target_models=targets,
        scores={name: np.stack([table[name][r] for r in rows]) for name in attacks},
        attacks={
            n: {k: v for k, v in a.items() if k not in _METRIC_KEYS} for n, a in attacks.items()
        },
        fpr_levels=[float(v) for v in doc["fpr_levels"]],
        metrics={n: {k: a[k] for k in _METRIC_KEYS if k in a} for n, a in attacks.items()},
        utility=doc.get("utility", {}),
        design=doc.get("design", {}),
        training=doc.get("training", []),
        config=doc["config"],
        environment=doc.get("environment", {}),
        created=doc.get("created", ""),
    )
