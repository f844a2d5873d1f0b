"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes)."""

from __future__ import annotations

import numpy as np

from mialens.data.dataset import Dataset
from mialens.data.registry import DatasetConfig, register_dataset


@register_dataset("digits", "scikit-learn's 1,797 8x8 handwritten digits, 10 classes", "image")
def load_digits(config: DatasetConfig) -> Dataset:
    """Images ``(1797, 1, 8, 8)`` in [0, 1] (pixel values 0..16 divided by 16)."""
    from sklearn.datasets import load_digits as sklearn_digits  # loads much of scikit-learn

    bunch = sklearn_digits()
    images = np.asarray(bunch.images, dtype=np.float32)[:, None] / 16.0
    return Dataset(
        name="digits",
        x=images,
        y=np.asarray(bunch.target, dtype=np.int64),
        ids=np.arange(images.shape[0]),
        num_classes=10,
        modality="image",
        class_names=tuple(str(c) for c in bunch.target_names),
    )
