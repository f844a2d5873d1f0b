"""Strict parsing of Shokri et al.'s text tables: comma-separated 0/1 features, 1-based labels."""

from __future__ import annotations

from typing import IO

import numpy as np

from mialens.errors import DataError

_CHUNK_ROWS = 4096
_ZERO, _ONE, _COMMA = ord("0"), ord("1"), ord(",")


def _parse_label(token: bytes, line: int, where: str) -> int:
    text = token.strip()
    if len(text) >= 2 and text[:1] == text[-1:] == b'"':
        text = text[1:-1]
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{where}: line {line}: the label {token!r} is not an integer.") from None


def _parse_features(rows: list[bytes], first_line: int, n_features: int, where: str) -> np.ndarray:
    width = 2 * n_features - 1  # "0,1,...,0"
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    if (bad := np.flatnonzero(lengths != width)).size:
        row = rows[bad[0]]
        count = row.count(b",") + 1 if row else 0
        raise DataError(
            f"{where}: line {first_line + bad[0]} has {count} feature values; expected "
            f"{n_features} comma-separated 0/1 values."
        )
    table = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), width)
    values = table[:, 0::2]
    invalid = ((values != _ZERO) & (values != _ONE)).any(axis=1)
    invalid |= (table[:, 1::2] != _COMMA).any(axis=1)
    if (bad := np.flatnonzero(invalid)).size:
        raise DataError(
            f"{where}: line {first_line + bad[0]} holds a value other than 0 or 1; every "
            "feature must be a binary value."
        )
    return values - _ZERO


def read_binary_rows(
    stream: IO[bytes], *, n_rows: int, n_features: int, labelled: bool, where: str
) -> tuple[np.ndarray | None, np.ndarray]:
    """Parse exactly ``n_rows`` lines of ``[label,]f1,...,fn`` with each ``fi`` in {0, 1}.

    Returns the raw integer labels (None unless ``labelled``; a label may be quoted) and
    the features as uint8 of shape ``(n_rows, n_features)``. ``where`` names the source
    in error messages.
    """
    features = np.empty((n_rows, n_features), dtype=np.uint8)
    labels = np.empty(n_rows, dtype=np.int64) if labelled else None
    done = 0

    def flush(lines: list[bytes]) -> int:
        if done + len(lines) > n_rows:
            raise DataError(f"{where}: more than the expected {n_rows} rows.")
        rows = [line.rstrip(b"\r\n") for line in lines]
        if labels is not None:
            split = [row.partition(b",") for row in rows]
            for i, (token, _, _) in enumerate(split):
                labels[done + i] = _parse_label(token, done + i + 1, where)
            rows = [rest for _, _, rest in split]
        features[done : done + len(rows)] = _parse_features(rows, done + 1, n_features, where)
        return done + len(rows)

    chunk: list[bytes] = []
    for line in stream:
        chunk.append(line)
        if len(chunk) == _CHUNK_ROWS:
            done = flush(chunk)
            chunk = []
    if chunk:
        done = flush(chunk)
    if done != n_rows:
        raise DataError(f"{where}: {done} rows, expected {n_rows}; the file is incomplete.")
    return labels, features


def read_labels(stream: IO[bytes], *, n_rows: int, where: str) -> np.ndarray:
    """Parse exactly ``n_rows`` lines holding one integer label each."""
    lines = stream.read().splitlines()
    if len(lines) != n_rows:
        raise DataError(f"{where}: {len(lines)} labels, expected {n_rows}.")
    return np.array([_parse_label(t, i + 1, where) for i, t in enumerate(lines)], dtype=np.int64)


def to_class_index(labels: np.ndarray, n_classes: int, where: str) -> np.ndarray:
    """Map labels ``1..n_classes`` to class indices ``0..n_classes-1``; raise if out of range."""
    if (bad := np.flatnonzero((labels < 1) | (labels > n_classes))).size:
        raise DataError(
            f"{where}: line {bad[0] + 1} holds the label {labels[bad[0]]}; labels must lie in "
            f"1..{n_classes}."
        )
    return labels - 1
