"""A cache of parsed arrays as ``.npy`` files in the data directory, keyed by source checksum."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mialens.data.download import data_dir
from mialens.io import load_npy, save_npy, write_json

logger = logging.getLogger(__name__)

_VERSION = 1


def _array_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def cache_folder(name: str, key: str) -> Path:
    """Where the arrays of data set ``name`` parsed from sources identified by ``key`` live."""
    digest = hashlib.sha256(f"{_VERSION}:{key}".encode()).hexdigest()[:16]
    return data_dir() / "parsed" / f"{name}-{digest}"


def _load(folder: Path, key: str) -> dict[str, np.ndarray] | None:
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("version") != _VERSION or manifest.get("key") != key:
            raise ValueError("the manifest belongs to other sources")
        arrays = {}
        for name, meta in manifest["arrays"].items():
            if not name.isidentifier():
                raise ValueError(f"bad array name {name!r}")
            array = load_npy(folder / f"{name}.npy")
            if (
                list(array.shape) != meta["shape"]
                or str(array.dtype) != meta["dtype"]
                or _array_sha256(array) != meta["sha256"]
            ):
                raise ValueError(f"{name}.npy does not match the manifest")
            arrays[name] = array
    except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("parsed-data cache %s is corrupt (%s); rebuilding it.", folder, exc)
        return None
    return arrays


def _save(folder: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    for name, array in arrays.items():
        save_npy(folder / f"{name}.npy", array)
    meta = {
        name: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": _array_sha256(a)}
        for name, a in arrays.items()
    }
    # Written last: a folder without a valid manifest is never read.
    write_json(folder / "manifest.json", {"version": _VERSION, "key": key, "arrays": meta})


def cached_arrays(
    name: str, key: str, build: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The arrays ``build()`` returns, reused from the cache while it is intact.

    ``key`` must change whenever the sources change (use their checksums). Every array
    is checked against the sha256 in the manifest; a damaged cache is rebuilt.
    """
    folder = cache_folder(name, key)
    arrays = _load(folder, key)
    if arrays is None:
        arrays = build()
        try:
            _save(folder, key, arrays)
        except OSError as exc:
            logger.warning("could not cache the parsed %s data in %s: %s", name, folder, exc)
    return arrays
