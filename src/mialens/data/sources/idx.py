"""The IDX format of (Fashion-)MNIST: a big-endian header, then a dense array."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from mialens.errors import DataError

_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes, where: str) -> np.ndarray:
    """Decode IDX bytes: magic ``00 00 <type> <ndim>``, ``ndim`` big-endian uint32 sizes, data."""
    if len(data) < 4:
        raise DataError(f"{where}: truncated IDX file ({len(data)} bytes, no header).")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _DTYPES or ndim == 0:
        raise DataError(
            f"{where}: not an IDX file (magic number {data[:4].hex()}; expected 0000 followed "
            "by a type code and the number of dimensions)."
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{where}: truncated IDX header ({len(data)} of {header} bytes).")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header != expected:
        state = "truncated" if len(data) - header < expected else "followed by extra bytes"
        raise DataError(
            f"{where}: IDX data of shape {shape} needs {expected} bytes but the file holds "
            f"{len(data) - header}: it is {state}."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_idx_gz(path: Path) -> np.ndarray:
    """Decode a gzip-compressed IDX file."""
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a complete gzip file ({exc}).") from exc
    return parse_idx(data, str(path))
