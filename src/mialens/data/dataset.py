"""The in-memory data set every part of mialens works on."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from mialens.errors import DataError
from mialens.validation import check_features, check_ids, check_labels, check_multiclass

log = logging.getLogger(__name__)

Modality = Literal["tabular", "image", "text"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features, labels and stable sample ids of one labelled data set.

    ``x`` is float32 with shape ``(n, features)`` for tabular data or ``(n, channels,
    height, width)`` for images; ``y`` holds class indices in ``[0, num_classes)``;
    ``ids`` are unique per sample and follow the sample into every output.
    ``label_values`` is the user's original label of each class when the source's labels
    were not already ``0..num_classes-1`` (see :func:`encode_labels`); outputs write it.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    num_classes: int
    modality: Modality = "tabular"
    class_names: tuple[str, ...] | None = None
    label_values: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        x = check_features(self.x, f"{self.name}: x")
        n = x.shape[0]
        if self.num_classes < 2:
            raise DataError(f"{self.name}: num_classes must be at least 2, got {self.num_classes}.")
        y = check_labels(self.y, self.num_classes, f"{self.name}: y", n=n)
        ids = check_ids(self.ids, n, f"{self.name}: ids")
        if self.modality == "image" and x.ndim != 4:
            raise DataError(
                f"{self.name}: image data must have shape (n, channels, height, width); "
                f"got {x.shape}."
            )
        if self.modality == "tabular" and x.ndim != 2:
            raise DataError(
                f"{self.name}: tabular data must have shape (n, features); got {x.shape}."
            )
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise DataError(
                f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes."
            )
        if self.label_values is not None and len(self.label_values) != self.num_classes:
            raise DataError(
                f"{self.name}: {len(self.label_values)} label values for {self.num_classes} "
                "classes."
            )
        check_multiclass(y, f"{self.name}: y")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "ids", ids)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample."""
        return tuple(int(s) for s in self.x.shape[1:])

    def subset(self, index: np.ndarray) -> Dataset:
        """The samples at positions ``index`` (order kept), as a new data set."""
        index = np.asarray(index)
        return Dataset(
            name=self.name,
            x=self.x[index],
            y=self.y[index],
            ids=self.ids[index],
            num_classes=self.num_classes,
            modality=self.modality,
            class_names=self.class_names,
            label_values=self.label_values,
        )

    @cached_property
    def fingerprint(self) -> str:
        """A sha256 over features, labels and ids: equal fingerprints mean equal data."""
        h = hashlib.sha256()
        ids = self.ids.astype("U") if self.ids.dtype.kind == "U" else self.ids
        for arr in (self.x, self.y, ids):
            h.update(f"{arr.shape}{arr.dtype}".encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(str(self.num_classes).encode())
        return h.hexdigest()


def encode_labels(
    labels: np.ndarray, name: str, allow_many_classes: bool = False
) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Class indices ``0..C-1`` of the sorted distinct ``labels`` (integers or strings),
    and the original label of each class unless the labels already are ``0..C-1``.

    A "label" with more distinct values than half the samples is most likely a feature
    (or an id): refused unless ``allow_many_classes``.
    """
    values, y = np.unique(labels, return_inverse=True)
    if 2 * len(values) > len(labels) and not allow_many_classes:
        raise DataError(
            f"{name} has {len(values)} distinct values in {len(labels)} samples (more than "
            "half), so it looks like a feature or an id, not a class label; check which "
            "column is the label, or set dataset.allow_many_classes: true if the classes "
            "really are that small"
        )
    contiguous = values.dtype.kind in "iu" and np.array_equal(values, np.arange(len(values)))
    if contiguous:
        return y.astype(np.int64), None
    if values.dtype.kind in "iu":
        log.warning(
            "%s holds %d distinct labels between %s and %s: they become classes 0..%d (the "
            "outputs keep the original labels)",
            name,
            len(values),
            values[0],
            values[-1],
            len(values) - 1,
        )
    return y.astype(np.int64), tuple(str(v) for v in values.tolist())


def original_labels(labels: np.ndarray, values: list[str] | None) -> np.ndarray:
    """The user's label of each class index (integers stay integers), or the indices
    themselves when the labels were not remapped."""
    if values is None:
        return np.asarray(labels).astype(np.int64)
    original = np.asarray(values)[labels]
    try:
        numbers = original.astype(np.int64)
    except ValueError:
        return original
    return numbers if np.array_equal(numbers.astype(str), original) else original  # "007"
