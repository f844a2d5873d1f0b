"""Validation of arrays at the boundary, with messages that say what to fix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mialens.errors import ConfigError, DataError


def _describe_bad(values: np.ndarray) -> str:
    n_nan = int(np.isnan(values).sum())
    n_inf = int(np.isinf(values).sum())
    first = np.argwhere(~np.isfinite(values))[0].tolist()
    return f"{n_nan} NaN and {n_inf} infinite values (first at index {tuple(first)})"


def check_finite(values: np.ndarray, name: str) -> np.ndarray:
    """Raise :class:`DataError` if ``values`` holds NaN or infinite entries."""
    if values.size and not np.isfinite(values).all():
        raise DataError(
            f"{name} contains {_describe_bad(values)}; remove or repair these entries "
            "(e.g. a diverged model produces NaN logits)."
        )
    return values


def check_features(x: object, name: str = "x") -> np.ndarray:
    """Return ``x`` as a finite float32 array with at least two dimensions."""
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a numeric array: {exc}") from exc
    if arr.ndim < 2:
        raise DataError(
            f"{name} must have shape (n_samples, ...features); got shape {arr.shape}. "
            "Reshape a single feature column with x.reshape(-1, 1)."
        )
    if arr.shape[0] == 0:
        raise DataError(f"{name} is empty: no samples.")
    return check_finite(arr, name)


def check_labels(
    y: object, num_classes: int | None = None, name: str = "y", n: int | None = None
) -> np.ndarray:
    """Return integer class labels in ``[0, num_classes)`` as an int64 vector."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise DataError(f"{name} must be a 1-D vector of class indices; got shape {arr.shape}.")
    if n is not None and arr.shape[0] != n:
        raise DataError(f"{name} has {arr.shape[0]} entries but there are {n} samples.")
    if arr.size == 0:
        raise DataError(f"{name} is empty: no samples.")
    if arr.dtype.kind == "f":
        check_finite(arr, name)
        if not np.all(arr == np.round(arr)):
            raise DataError(f"{name} must hold integer class indices; found fractional values.")
    elif arr.dtype.kind not in "iub":
        raise DataError(
            f"{name} must hold integer class indices, not {arr.dtype}; "
            "encode string labels first (e.g. sklearn.preprocessing.LabelEncoder)."
        )
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise DataError(f"{name} holds negative labels (min {arr.min()}); labels must be >= 0.")
    if num_classes is not None and arr.max() >= num_classes:
        raise DataError(
            f"{name} holds label {arr.max()} but there are only {num_classes} classes "
            f"(valid labels are 0..{num_classes - 1})."
        )
    return arr


def check_multiclass(y: np.ndarray, name: str = "y") -> None:
    """Raise if ``y`` holds fewer than two distinct classes."""
    classes = np.unique(y)
    if classes.size < 2:
        raise DataError(
            f"{name} holds a single class ({classes.tolist()}); a classifier audit needs "
            "samples from at least two classes."
        )


def check_ids(ids: object, n: int, name: str = "ids") -> np.ndarray:
    """Return unique sample ids (int64 or str) of length ``n``."""
    arr = np.asarray(ids)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise DataError(f"{name} must be a vector of {n} sample ids; got shape {arr.shape}.")
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
    elif arr.dtype.kind in "UO":
        arr = arr.astype(str)
    else:
        raise DataError(f"{name} must hold integers or strings, not {arr.dtype}.")
    uniq, counts = np.unique(arr, return_counts=True)
    if uniq.size != n:
        dup = uniq[counts > 1][:5].tolist()
        raise DataError(f"{name} must be unique; duplicated ids include {dup}.")
    return arr


def check_logits(
    logits: object,
    name: str = "logits",
    n: int | None = None,
    num_classes: int | None = None,
) -> np.ndarray:
    """Return model outputs of shape (n_samples, [n_queries,] n_classes) as float32."""
    try:
        arr = np.asarray(logits, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a numeric array: {exc}") from exc
    if arr.ndim not in (2, 3):
        raise DataError(
            f"{name} must have shape (n_samples, n_classes) or (n_samples, n_queries, "
            f"n_classes); got shape {arr.shape}."
        )
    if n is not None and arr.shape[0] != n:
        raise DataError(f"{name} has {arr.shape[0]} rows but there are {n} samples.")
    if num_classes is not None and arr.shape[-1] != num_classes:
        raise DataError(
            f"{name} has {arr.shape[-1]} columns but the data has {num_classes} classes."
        )
    if arr.shape[-1] < 2:
        raise DataError(f"{name} must have one column per class (at least 2); got {arr.shape}.")
    return check_finite(arr, name)


def _index_hint(arr: np.ndarray, shape: Sequence[int]) -> str:
    """A hint when a membership argument looks like sample indices instead of a mask."""
    if len(shape) != 1 or arr.ndim != 1 or arr.dtype.kind not in "iu" or not arr.size:
        return ""
    n = shape[0]
    if np.isin(arr, (0, 1)).all() or arr.min() < 0 or arr.max() >= n:
        return ""  # a 0/1 vector is a mask (of the wrong length, if it is wrong)
    return (
        f" It looks like {arr.size} sample indices; pass a boolean mask of length {n} "
        f"instead: mask = np.zeros({n}, bool); mask[indices] = True."
    )


def check_member_mask(mask: object, shape: Sequence[int], name: str = "members") -> np.ndarray:
    """Return a boolean membership mask of the given shape.

    A 0/1 integer vector is read as a mask; other integers (sample indices) are refused
    with a hint, since ``[0, 1]`` could be either.
    """
    arr = np.asarray(mask)
    if arr.shape != tuple(shape):
        raise DataError(
            f"{name} must have shape {tuple(shape)}; got {arr.shape}.{_index_hint(arr, shape)}"
        )
    if arr.dtype != bool:
        if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
            raise DataError(
                f"{name} must be boolean (or 0/1): True marks a training member."
                f"{_index_hint(arr, shape)}"
            )
        arr = arr.astype(bool)
    return arr


def check_fpr_levels(rates: Sequence[float]) -> list[float]:
    """False-positive rates strictly between 0 and 1, deduplicated, largest first.

    Raises :class:`ConfigError` (a ``ValueError``, so configuration validators report it).
    """
    try:
        shown: object = list(rates)
        values = [float(r) for r in rates]
    except (TypeError, ValueError):
        shown, values = rates, []
    if not values or any(not 0 < r < 1 for r in values):
        raise ConfigError(f"false-positive rates must lie strictly between 0 and 1; got {shown}")
    return sorted(set(values), reverse=True)
