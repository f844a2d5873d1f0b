"""User data in a NumPy ``.npz`` file: arrays ``x``, ``y`` and optionally ``ids``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from mialens.data.dataset import Dataset
from mialens.data.registry import DatasetConfig, register_dataset
from mialens.errors import ConfigError, DataError
from mialens.validation import check_labels


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise DataError(f"npz file {path} does not exist.") from exc
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc}).") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path} holds a single array, not an .npz archive; save it with "
            "np.savez(path, x=features, y=labels[, ids=sample_ids])."
        )
    with loaded:
        missing = [k for k in ("x", "y") if k not in loaded.files]
        if missing:
            raise DataError(
                f"{path} lacks the array(s) {', '.join(missing)} (it holds "
                f"{', '.join(loaded.files) or 'nothing'}); save it with "
                "np.savez(path, x=features, y=labels[, ids=sample_ids])."
            )
        try:
            return {k: loaded[k] for k in ("x", "y", "ids") if k in loaded.files}
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise DataError(
                f"{path}: cannot read its arrays ({exc}); object arrays are refused because "
                "loading them would run pickle."
            ) from exc


@register_dataset("npz", "your arrays x, y (and ids) from a .npz file given as `path`", "tabular")
def load_npz(config: DatasetConfig) -> Dataset:
    """Load ``x``, ``y`` and optional ``ids`` (pickled object arrays are refused).

    ``x`` of shape ``(n, c, h, w)`` or ``(n, h, w)`` is an image set (uint8 pixels are
    divided by 255), ``(n, features)`` is tabular. ``num_classes`` is ``max(y) + 1``.
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
    return Dataset(
        name=path.stem,
        x=x,
        y=y,
        ids=arrays.get("ids", np.arange(x.shape[0])),
        num_classes=int(y.max()) + 1,
        modality=modality,
    )
