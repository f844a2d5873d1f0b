"""Atomic file writes: a result file is either complete or absent, never half written."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, file_mode())  # mkstemp creates 0600; results get the usual mode
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_mode() -> int:
    """The mode ``open`` gives a new file under the process's umask (``0o666 & ~umask``)."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """The mode ``mkdir`` gives a new folder under the process's umask (``0o777 & ~umask``)."""
    return 0o777 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (setting it, even
    briefly, would race with files that other threads create)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def to_json(obj: Any) -> str:
    """Serialise ``obj`` (numpy scalars and arrays allowed) as indented JSON."""
    return json.dumps(obj, indent=2, default=_json_default, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON atomically."""
    text = to_json(obj)
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write text atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save one array in ``.npy`` format atomically (never pickled)."""
    with atomic_open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """Load an array saved by :func:`save_npy` (object arrays are refused)."""
    return np.load(path, allow_pickle=False)
