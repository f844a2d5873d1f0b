"""The per-sample tables as CSV text, and read back.

CSV files are safe to open in a spreadsheet: a text cell that would start a formula is
prefixed with a single quote (see :func:`text_cell`), and read back without it.
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np

from mialens.audit.results import AuditResult
from mialens.data.dataset import original_labels

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
        cols = [map(repr, result.scores[n][row].tolist()) for n in names]  # Python floats
        writer.writerows(zip(ids, labels, [target] * len(ids), member, *cols, strict=True))
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
