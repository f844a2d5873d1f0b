"""Location30, Purchase100 and Texas100: the binary tabular sets of Shokri et al. (S&P 2017).

The archives are those of the public ``privacytrustlab/datasets`` GitHub repository, the
copies that ML Privacy Meter and most membership-inference papers use. Only Location30
has a checksum known to us; Purchase100 and Texas100 use trust on first use (see
:mod:`mialens.data.download`) behind strict validation of rows, features and labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from mialens.data.dataset import Dataset
from mialens.data.download import (
    RemoteFile,
    discard_unverified,
    fetch,
    file_sha256,
    trust_on_first_use,
)
from mialens.data.registry import DatasetConfig, register_dataset
from mialens.data.sources.archive import read_members
from mialens.data.sources.binary_table import read_binary_rows, read_labels, to_class_index
from mialens.data.sources.cache import cached_arrays
from mialens.errors import DataError

# Raw-download form used by real loaders of these archives (e.g. the purchase/texas/location
# preparation scripts that fetch github.com/privacytrustlab/datasets/raw/master/<name>.tgz).
_GITHUB = "https://github.com/privacytrustlab/datasets/raw/master/"
# The authors' original host, used by ML-Leaks/MemGuard-style code for purchase and texas.
_NUS = "https://www.comp.nus.edu.sg/~reza/files/"


@dataclass(frozen=True)
class TableSpec:
    """One archive and the exact shape of the table it must hold."""

    name: str
    remote: RemoteFile
    features_member: str
    labels_member: str | None  # None: the label is the first column of features_member
    n_rows: int
    n_features: int
    n_classes: int


LOCATION30 = TableSpec(
    name="location30",
    remote=RemoteFile(
        "dataset_location.tgz",
        (_GITHUB + "dataset_location.tgz",),
        # sha256 of the file in privacytrustlab/datasets, as recorded in mialens' design
        # notes and verified against a copy of that file.
        sha256="927203f85a868f8ee17a0ded1dc61699efe602167beabe34fbf45b4b1de94b33",
    ),
    features_member="bangkok",
    labels_member=None,
    n_rows=5010,
    n_features=446,
    n_classes=30,
)

# No checksum of dataset_purchase.tgz / dataset_texas.tgz is published that we could find:
# trust on first use.
PURCHASE100 = TableSpec(
    name="purchase100",
    remote=RemoteFile(
        "dataset_purchase.tgz", (_GITHUB + "dataset_purchase.tgz", _NUS + "dataset_purchase.tgz")
    ),
    features_member="dataset_purchase",
    labels_member=None,
    n_rows=197_324,
    n_features=600,
    n_classes=100,
)

TEXAS100 = TableSpec(
    name="texas100",
    remote=RemoteFile(
        "dataset_texas.tgz", (_GITHUB + "dataset_texas.tgz", _NUS + "dataset_texas.tgz")
    ),
    features_member="texas/100/feats",
    labels_member="texas/100/labels",
    n_rows=67_330,
    n_features=6169,
    n_classes=100,
)


def _parse(spec: TableSpec, archive: Path) -> dict[str, np.ndarray]:
    def features(stream: IO[bytes]) -> tuple[np.ndarray | None, np.ndarray]:
        return read_binary_rows(
            stream,
            n_rows=spec.n_rows,
            n_features=spec.n_features,
            labelled=spec.labels_member is None,
            where=f"{archive}:{spec.features_member}",
        )

    readers: dict[str, Callable[[IO[bytes]], object]] = {spec.features_member: features}
    if spec.labels_member is not None:
        where = f"{archive}:{spec.labels_member}"
        readers[spec.labels_member] = lambda s: read_labels(s, n_rows=spec.n_rows, where=where)
    members = read_members(archive, readers)
    labels, x = members[spec.features_member]
    label_member = spec.features_member
    if spec.labels_member is not None:
        label_member = spec.labels_member
        labels = members[label_member]
    y = to_class_index(labels, spec.n_classes, f"{archive}:{label_member}")
    return {"x": x, "y": y}


def _load(spec: TableSpec, config: DatasetConfig) -> Dataset:
    path = fetch(spec.remote, download=config.download, local_path=config.path)
    key = f"{file_sha256(path)}:{spec.n_rows}x{spec.n_features}:{spec.n_classes}"
    try:
        arrays = cached_arrays(spec.name, key, lambda: _parse(spec, path))
    except DataError as exc:
        if (moved := discard_unverified(spec.remote, path)) is None:
            raise
        raise DataError(
            f"{exc} {spec.remote.filename} has no published checksum and failed validation, "
            f"so it was moved to {moved}; loading again downloads a fresh copy."
        ) from exc
    trust_on_first_use(spec.remote, path)
    return Dataset(
        name=spec.name,
        x=arrays["x"].astype(np.float32),
        y=arrays["y"],
        ids=np.arange(spec.n_rows),
        num_classes=spec.n_classes,
        modality="tabular",
    )


@register_dataset(
    "location30", "Foursquare check-ins in Bangkok: 5,010 x 446 binary, 30 classes", "tabular"
)
def load_location30(config: DatasetConfig) -> Dataset:
    """Location30 (``dataset_location.tgz``, file ``bangkok``): labels ``"1".."30"`` → 0..29."""
    return _load(LOCATION30, config)


@register_dataset(
    "purchase100", "Kaggle shopping histories: 197,324 x 600 binary, 100 classes", "tabular"
)
def load_purchase100(config: DatasetConfig) -> Dataset:
    """Purchase100 (``dataset_purchase.tgz``, file ``dataset_purchase``): labels 1..100 → 0..99."""
    return _load(PURCHASE100, config)


@register_dataset(
    "texas100", "Texas hospital discharges: 67,330 x 6,169 binary, 100 classes", "tabular"
)
def load_texas100(config: DatasetConfig) -> Dataset:
    """Texas100 (``dataset_texas.tgz``, files ``texas/100/feats`` and ``labels``) → 0..99."""
    return _load(TEXAS100, config)
