"""User data in a NumPy ``.npz`` file: arrays ``x``, ``y`` and optionally ``ids``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from mialens.data.dataset import Dataset, encode_labels
from mialens.data.registry import DatasetConfig, register_dataset
from mialens.errors import ConfigError, DataError
from mialens.validation import check_labels

_PICKLE_REFUSED = (
    "and mialens never loads pickles (they can run code): save numeric arrays with "
    "np.savez(path, x=features, y=labels[, ids=sample_ids])."
)
_SAVE_HINT = "save your arrays with np.savez(path, x=features, y=labels[, ids=sample_ids])"


def _check_is_npz(path: Path) -> None:
    """Refuse a missing path, a folder, or a file that is not a zip archive (what
    np.savez writes) or a single .npy array, before numpy tries to read it."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(6)
    except FileNotFoundError:
        raise DataError(f"npz file {path} does not exist.") from None
    except IsADirectoryError:
        raise DataError(f"npz path {path} is a folder, not a file.") from None
    except OSError as exc:
        raise DataError(f"cannot read npz file {path}: {exc.strerror}.") from None
    if not magic.startswith((b"PK", b"\x93NUMPY")):
        raise DataError(f"{path} is not an .npz file (not a zip archive); {_SAVE_HINT}.")


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    _check_is_npz(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        if "pickle" in str(exc):  # numpy's message would suggest allow_pickle
            raise DataError(f"{path} holds a pickled object array, {_PICKLE_REFUSED}") from None
        raise DataError(f"{path} is not a readable .npz file ({exc}).") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(f"{path} holds a single array, not an .npz archive; {_SAVE_HINT}.")
    with loaded:
        missing = [k for k in ("x", "y") if k not in loaded.files]
        if missing:
            raise DataError(
                f"{path} lacks the array(s) {', '.join(missing)} (it holds "
                f"{', '.join(loaded.files) or 'nothing'}); {_SAVE_HINT}."
            )
        try:
            return {k: loaded[k] for k in ("x", "y", "ids") if k in loaded.files}
        except (ValueError, OSError, zipfile.BadZipFile):
            raise DataError(f"{path} holds a pickled object array, {_PICKLE_REFUSED}") from None


@register_dataset("npz", "your arrays x, y (and ids) from a .npz file given as `path`", "tabular")
def load_npz(config: DatasetConfig) -> Dataset:
    """Load ``x``, ``y`` and optional ``ids`` (pickled object arrays are refused).

    ``x`` of shape ``(n, c, h, w)`` or ``(n, h, w)`` is an image set (uint8 pixels are
    divided by 255), ``(n, features)`` is tabular. Labels that are not ``0..C-1`` (e.g.
    ``{0, 1, 2, 1000}``) become classes ``0..C-1``; outputs keep the original labels.
    """
    if config.path is None:
        raise ConfigError("the npz data set needs `path`: the .npz file holding x and y.")
    path = config.path.expanduser()
    arrays = _read_arrays(path)
    x = arrays["x"]
    if x.ndim not in (2, 3, 4):
        raise DataError(
            f"{path}: x must have shape (n, features), (n, height, width) or (n, channels, "
            f"height, width); got {x.shape}."
        )
    if x.ndim == 3:
        x = x[:, None]
    modality = "tabular" if x.ndim == 2 else "image"
    if x.dtype == np.uint8 and modality == "image":
        x = x.astype(np.float32) / 255.0
    y = check_labels(arrays["y"], name=f"{path}: y", n=x.shape[0])
    y, label_values = encode_labels(y, f"{path}: y", config.allow_many_classes)
    return Dataset(
        name=path.stem,
        x=x,
        y=y,
        ids=arrays.get("ids", np.arange(x.shape[0])),
        num_classes=int(y.max()) + 1,
        modality=modality,
        label_values=label_values,
    )
