"""User data in a CSV file with a header row: numeric features and a label column."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mialens.data.dataset import Dataset, encode_labels
from mialens.data.registry import DatasetConfig, register_dataset
from mialens.errors import ConfigError, DataError

_LABEL_NAMES = ("label", "target", "y")


def _column(header: list[str], column: str | int, what: str, path: Path) -> int:
    """The index of ``column`` (a header name, or an index; negative counts from the end)."""
    if isinstance(column, int):
        if not -len(header) <= column < len(header):
            raise ConfigError(f"{what} {column} is out of range: {path} has {len(header)} columns.")
        return column % len(header)
    if column not in header:
        raise ConfigError(
            f"{what} {column!r} is not a column of {path}; its columns are: {', '.join(header)}."
        )
    return header.index(column)


def _read(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-blank rows, each with its line number."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            rows = [(reader.line_num, row) for row in reader if row]
    except FileNotFoundError as exc:
        raise DataError(f"csv file {path} does not exist.") from exc
    except IsADirectoryError:
        raise DataError(f"csv path {path} is a folder, not a file.") from None
    except OSError as exc:
        raise DataError(f"cannot read csv file {path}: {exc.strerror}.") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} is not a readable UTF-8 CSV file ({exc}).") from exc
    if len(rows) < 2:
        raise DataError(f"{path} needs a header row and at least one data row.")
    header = [name.strip() for name in rows[0][1]]
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(
                f"{path}: line {line} has {len(row)} cells but the header has "
                f"{len(header)} columns."
            )
    return header, rows[1:]


def _label_column(header: list[str], config: DatasetConfig, path: Path) -> int:
    """The label column: ``label_column``, else the one column named label, target or y."""
    if config.label_column is not None:
        return _column(header, config.label_column, "label_column", path)
    named = [i for i, name in enumerate(header) if name.lower() in _LABEL_NAMES]
    if len(named) == 1:
        return named[0]
    which = "several columns are" if named else "no column is"
    raise ConfigError(
        f"{path}: which column is the label? {which} named label, target or y; set "
        f"dataset.label_column (e.g. --set dataset.label_column={header[-1]}); its columns "
        f"are: {', '.join(header)}."
    )


@register_dataset("csv", "your table from a CSV file with a header row, given as `path`", "tabular")
def load_csv(config: DatasetConfig) -> Dataset:
    """Features are every column but the label and id columns. The label column is
    ``label_column``, else the one column named ``label``, ``target`` or ``y``.

    Labels may be strings or integers; sorted unique labels become classes 0..C-1 and keep
    their original text as class names and label values (see
    :func:`~mialens.data.dataset.encode_labels`). Ids come from ``id_column`` or the row index.
    """
    if config.path is None:
        raise ConfigError("the csv data set needs `path`: the CSV file to load.")
    path = config.path.expanduser()
    header, rows = _read(path)
    label = _label_column(header, config, path)
    id_col = None
    if config.id_column is not None:
        id_col = _column(header, config.id_column, "id_column", path)
        if id_col == label:
            raise ConfigError(f"label_column and id_column both name column {header[label]!r}.")
    features = [i for i in range(len(header)) if i not in (label, id_col)]
    if not features:
        raise DataError(f"{path} has no feature columns besides the label and id columns.")
    x = np.empty((len(rows), len(features)), dtype=np.float32)
    for r, (line, row) in enumerate(rows):
        try:
            x[r] = [float(row[i]) for i in features]
        except ValueError:
            bad = next(i for i in features if not _is_number(row[i]))
            raise DataError(
                f"{path}: line {line}, column {header[bad]!r} holds {row[bad]!r}, which is not "
                "a number. Every column except the label and id columns must be numeric."
            ) from None
    raw = [row[label].strip() for _, row in rows]
    y, label_values = encode_labels(
        np.array([int(v) for v in raw] if _all_int(raw) else raw),
        f"{path}: label column {header[label]!r}",
        config.allow_many_classes,
    )
    class_names = label_values or tuple(str(c) for c in range(int(y.max()) + 1))
    ids: np.ndarray = np.arange(len(rows))
    if id_col is not None:
        raw_ids = [row[id_col].strip() for _, row in rows]
        ids = np.array([int(v) for v in raw_ids]) if _all_int(raw_ids) else np.array(raw_ids)
    return Dataset(
        name=path.stem,
        x=x,
        y=y,
        ids=ids,
        num_classes=len(class_names),
        modality="tabular",
        class_names=class_names,
        label_values=label_values,
    )


def _all_int(values: list[str]) -> bool:
    try:
        for value in values:
            int(value)
    except ValueError:
        return False
    return True


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
