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


_LINE_END = "\r\n"  # RFC 4180 line ends: a cell holding a carriage return is then quoted too


def _csv_writer(buf: io.StringIO):
    return csv.writer(buf, lineterminator=_LINE_END)


def _quoted(cell: str) -> str:
    """``cell`` as :func:`_csv_writer` writes it within a row (quoted where needed)."""
    buf = io.StringIO()
    _csv_writer(buf).writerow([cell, ""])  # a lone empty cell would be written as ""
    return buf.getvalue()[: -len("," + _LINE_END)]


def _value_cells(values: np.ndarray) -> list[str]:
    """Numbers as cells: Python's ``repr`` of each value (floats at full precision,
    ``nan`` when undefined; integers and booleans as they are), formatted in one call."""
    if values.size == 0:
        return []
    return repr(values.tolist())[1:-1].split(", ")  # a number's repr holds no ", "


def _text_cells(values: np.ndarray) -> list[str]:
    """Text as cells: neutralised for spreadsheets (:func:`text_cell`), quoted for CSV."""
    return [_quoted(text_cell(str(v))) for v in values.tolist()]


def _id_cells(ids: np.ndarray) -> list[str]:
    """Sample ids as cells: numbers as they are, text neutralised."""
    if ids.dtype.kind in "iuf":
        return [str(v) for v in ids.tolist()]
    return _text_cells(ids)


def _header(names: list[str]) -> str:
    """The header line: column names as text cells, neutralised for spreadsheets."""
    buf = io.StringIO()
    _csv_writer(buf).writerow([text_cell(name) for name in names])
    return buf.getvalue()


def _lines(columns: list[list[str]]) -> str:
    """The CSV lines of equal-length columns of cells, each ended, as the ``csv`` module
    writes them (joined in C, not written row by row)."""
    if len(columns) == 1:  # the csv module quotes the only cell of a row when it is empty
        columns = [[cell or '""' for cell in columns[0]]]
    return _LINE_END.join([*map(",".join, zip(*columns, strict=True)), ""])


def samples_table(result: AuditResult) -> str:
    """The per-sample table as CSV text, one row per (sample, target).

    Columns: ``sample_id``, ``label`` (the user's original label when the data set's
    labels were remapped to classes 0..C-1), ``target`` (model index), ``member`` (0/1), then
    one column per attack holding that attack's score of the sample against the target
    (higher = more likely member). Scores keep full float64 precision; text ids are
    neutralised for spreadsheets (:func:`text_cell`). Each cell is written as the
    ``csv`` module writes it; the rows are joined per target, not written one by one.
    """
    names = list(result.scores)
    ids = _id_cells(np.asarray(result.sample_ids))
    labels = _id_cells(original_labels(result.labels, result.design.get("label_values")))
    parts = [_header(["sample_id", "label", "target", "member", *names])]
    for row, target in enumerate(result.target_models):
        member = _value_cells(result.members[row].astype(int))
        scores = [_value_cells(np.asarray(result.scores[name][row])) for name in names]
        parts.append(_lines([ids, labels, [str(target)] * len(ids), member, *scores]))
    return "".join(parts)


def table_csv(columns: dict[str, np.ndarray]) -> str:
    """Equal-length columns as CSV text: floats at full precision (``nan`` when undefined),
    integers and booleans as they are, text (and column names) neutralised for
    spreadsheets (:func:`text_cell`)."""
    cells = []
    for col in map(np.asarray, columns.values()):
        cells.append(_value_cells(col) if col.dtype.kind in "fiub" else _text_cells(col))
    return _header([str(name) for name in columns]) + _lines(cells)


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
