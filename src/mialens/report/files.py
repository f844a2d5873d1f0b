"""Write an audit's outputs (metrics.json, samples.csv, report.html) and read them back.

Each file is written atomically, so a killed run never leaves a truncated result. CSV
files are safe to open in a spreadsheet: a text cell that would start a formula is
prefixed with a single quote (see :func:`text_cell`), and read back without it.
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

# OWASP, "CSV Injection": cells starting with these are run as formulas by spreadsheets
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: str) -> str:
    """A text cell that a spreadsheet shows as text (OWASP CSV-injection rule): one that
    starts with a formula character, after any single quotes, gets a quote in front.
    :func:`read_text_cell` undoes it exactly (numbers are never written through this)."""
    return "'" + value if value.lstrip("'")[:1] in _FORMULA_START else value


def read_text_cell(cell: str) -> str:
    """The text that :func:`text_cell` wrote as ``cell``."""
    return cell[1:] if cell[:1] == "'" and cell.lstrip("'")[:1] in _FORMULA_START else cell


def _csv_writer(buf: io.StringIO):
    # RFC 4180 line ends: a cell holding a carriage return is then quoted too
    return csv.writer(buf, lineterminator="\r\n")


def _id_cells(ids: np.ndarray) -> list[str]:
    """Sample ids as cells: numbers as they are, text neutralised."""
    if ids.dtype.kind in "iuf":
        return [str(v) for v in ids.tolist()]
    return [text_cell(str(v)) for v in ids.tolist()]


def original_labels(labels: np.ndarray, values: list[str] | None) -> np.ndarray:
    """The user's label of each class index (integers stay integers), or the indices
    themselves when the labels were not remapped."""
    if values is None:
        return np.asarray(labels).astype(np.int64)
    original = np.asarray(values)[labels]
    try:
        numbers = original.astype(np.int64)
    except ValueError:
        return original
    return numbers if np.array_equal(numbers.astype(str), original) else original  # "007"


def samples_table(result: AuditResult) -> str:
    """The per-sample table as CSV text, one row per (sample, target).

    Columns: ``sample_id``, ``label`` (the user's original label when the data set's
    labels were remapped to classes 0..C-1), ``target`` (model index), ``member`` (0/1), then
    one column per attack holding that attack's score of the sample against the target
    (higher = more likely member). Scores keep full float64 precision; text ids are
    neutralised for spreadsheets (:func:`text_cell`).
    """
    names = list(result.scores)
    buf = io.StringIO()
    writer = _csv_writer(buf)
    writer.writerow(["sample_id", "label", "target", "member", *map(text_cell, names)])
    ids = _id_cells(np.asarray(result.sample_ids))
    labels = _id_cells(original_labels(result.labels, result.design.get("label_values")))
    for row, target in enumerate(result.target_models):
        member = result.members[row].astype(int).tolist()
        cols = [[repr(float(v)) for v in result.scores[n][row]] for n in names]
        for i in range(len(ids)):
            writer.writerow([ids[i], labels[i], target, member[i], *(c[i] for c in cols)])
    return buf.getvalue()


def table_csv(columns: dict[str, np.ndarray]) -> str:
    """Equal-length columns as CSV text: floats at full precision (``nan`` when undefined),
    integers and booleans as they are, text (and column names) neutralised for
    spreadsheets (:func:`text_cell`)."""
    names = list(columns)
    cells = []
    for name in names:
        col = np.asarray(columns[name])
        if col.dtype.kind == "f":
            cells.append([repr(float(v)) for v in col.tolist()])
        elif col.dtype.kind in "iub":
            cells.append([str(v) for v in col.tolist()])
        else:
            cells.append([text_cell(str(v)) for v in col.tolist()])
    buf = io.StringIO()
    writer = _csv_writer(buf)
    writer.writerow([text_cell(str(name)) for name in names])
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
    """Read a samples.csv back into columns (ids as the strings they were, scores as
    float64)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = [read_text_cell(name) for name in rows[0]], rows[1:]
    columns = list(zip(*body, strict=True)) if body else [() for _ in header]
    out: dict[str, np.ndarray] = {}
    for name, col in zip(header, columns, strict=True):
        if name == "sample_id":
            out[name] = np.array([read_text_cell(v) for v in col], dtype=str)
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
        return np.array([read_text_cell(v) for v in col], dtype=str)


def _class_indices(labels: np.ndarray, values: list[str] | None) -> np.ndarray:
    """The class index of each label of samples.csv (original labels mapped back)."""
    if values is None:
        return labels.astype(np.int64)
    index = {v: c for c, v in enumerate(values)}
    return np.array([index[str(v)] for v in labels.tolist()], dtype=np.int64)


_METRIC_KEYS = ("auc", "advantage", "tpr_at_fpr", "tie_share", "bootstrap_replicates", "canaries")


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
