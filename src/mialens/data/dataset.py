"""The in-memory data set every part of mialens works on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from mialens.errors import DataError
from mialens.validation import check_features, check_ids, check_labels, check_multiclass

Modality = Literal["tabular", "image"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features, labels and stable sample ids of one labelled data set.

    ``x`` is float32 with shape ``(n, features)`` for tabular data or ``(n, channels,
    height, width)`` for images; ``y`` holds class indices in ``[0, num_classes)``;
    ``ids`` are unique per sample and follow the sample into every output.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    num_classes: int
    modality: Modality = "tabular"
    class_names: tuple[str, ...] | None = None

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
