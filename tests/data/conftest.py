"""Fixtures for the data tests: an isolated data directory and writers of real file formats."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty data directory (nothing is written to the home)."""
    home = tmp_path / "data-home"
    monkeypatch.setenv("MIALENS_DATA_DIR", str(home))
    return home


@pytest.fixture
def sha256() -> Callable[[Path], str]:
    return lambda path: hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def write_tgz() -> Callable[[Path, dict[str, bytes]], Path]:
    """Write a gzip-compressed tar archive holding the given members."""

    def write(path: Path, members: dict[str, bytes]) -> Path:
        with tarfile.open(path, "w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    return write


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format (magic 0x0000 08 ndim, big-endian sizes)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def write_idx_gz() -> Callable[[Path, np.ndarray], Path]:
    def write(path: Path, array: np.ndarray) -> Path:
        path.write_bytes(gzip.compress(idx_bytes(array), mtime=0))
        return path

    return write
