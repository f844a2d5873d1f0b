"""What the query attacks derive from the data the adversary holds: the number of
classes, the features' range and kind, balanced member/non-member rows and z-scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def num_classes_of(target: Any, *label_arrays: np.ndarray | None) -> int:
    """The number of classes: the target's if it knows it, else from the labels."""
    known = getattr(target, "num_classes", None)
    if known:
        return int(known)
    return int(max(int(np.max(a)) for a in label_arrays if a is not None and len(a)) + 1)


def data_box(x: np.ndarray) -> tuple[float, float]:
    """The range ``[min, max]`` of the features (the box searches and noise stay in)."""
    lo, hi = float(np.min(x)), float(np.max(x))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def is_binary(x: np.ndarray) -> bool:
    """True when every feature value is 0 or 1."""
    return bool(np.isin(np.unique(x[: min(len(x), 2000)]), (0.0, 1.0)).all())


def balanced_rows(member: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``max_rows`` flat indices into ``member (R, N)``, half members, half not."""
    flat = np.asarray(member, bool).ravel()
    ins, outs = np.flatnonzero(flat), np.flatnonzero(~flat)
    half = max(1, max_rows // 2)
    take_in = rng.choice(ins, size=min(half, ins.size), replace=False)
    take_out = rng.choice(outs, size=min(half, outs.size), replace=False)
    return np.sort(np.concatenate([take_in, take_out]))


@dataclass
class Standardizer:
    """Per-feature z-scores with the training rows' mean and standard deviation."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        x = np.asarray(x, np.float64)
        return cls(x.mean(axis=0), np.maximum(x.std(axis=0), 1e-8))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.std).astype(np.float32)
