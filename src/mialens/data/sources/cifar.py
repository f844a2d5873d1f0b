"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) from the official *binary* archives (never pickles)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from mialens.data.dataset import Dataset
from mialens.data.download import RemoteFile, fetch, file_sha256
from mialens.data.registry import DatasetConfig, register_dataset
from mialens.data.sources.archive import read_members
from mialens.data.sources.cache import cached_arrays
from mialens.errors import DataError

_TORONTO = "https://www.cs.toronto.edu/~kriz/"
_PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class CifarSpec:
    """One binary archive: its members, record layout and expected sizes."""

    name: str
    remote: RemoteFile
    train_members: tuple[str, ...]
    test_members: tuple[str, ...]
    names_member: str
    label_bytes: int  # the label used is the last of these bytes (CIFAR-100: coarse, fine)
    n_classes: int
    n_train: int = 50_000
    n_test: int = 10_000


# md5: the table on https://www.cs.toronto.edu/~kriz/cifar.html (the publisher's checksums,
#      also in datasets-mila/datasets--cifar100 md5sums for CIFAR-100).
# sha256 and size: tensorflow/datasets url_checksums/cifar10.txt and cifar100.txt.
CIFAR10 = CifarSpec(
    name="cifar10",
    remote=RemoteFile(
        "cifar-10-binary.tar.gz",
        (_TORONTO + "cifar-10-binary.tar.gz",),
        sha256="c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
        md5="c32a1d4ab5d03f1284b67883e8d87530",
        size=170052171,
    ),
    train_members=tuple(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)),
    test_members=("cifar-10-batches-bin/test_batch.bin",),
    names_member="cifar-10-batches-bin/batches.meta.txt",
    label_bytes=1,
    n_classes=10,
)

CIFAR100 = CifarSpec(
    name="cifar100",
    remote=RemoteFile(
        "cifar-100-binary.tar.gz",
        (_TORONTO + "cifar-100-binary.tar.gz",),
        sha256="58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
        md5="03b5dce01913d631647c71ecec9e9cb8",
        size=168513733,
    ),
    train_members=("cifar-100-binary/train.bin",),
    test_members=("cifar-100-binary/test.bin",),
    names_member="cifar-100-binary/fine_label_names.txt",
    label_bytes=2,
    n_classes=100,
)


def _records(data: bytes, spec: CifarSpec, where: str) -> tuple[np.ndarray, np.ndarray]:
    size = spec.label_bytes + _PIXELS
    if not data or len(data) % size:
        raise DataError(
            f"{where}: {len(data)} bytes is not a whole number of {size}-byte records "
            f"({spec.label_bytes} label byte(s) + {_PIXELS} pixels); the file is truncated."
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, size)
    labels = records[:, spec.label_bytes - 1]
    if labels.max() >= spec.n_classes:
        raise DataError(f"{where}: label {labels.max()} outside 0..{spec.n_classes - 1}.")
    return records[:, spec.label_bytes :].reshape(-1, 3, 32, 32), labels


def _class_names(stream: IO[bytes], spec: CifarSpec, where: str) -> np.ndarray:
    names = [line.strip() for line in stream.read().decode("utf-8").splitlines() if line.strip()]
    if len(names) != spec.n_classes:
        raise DataError(f"{where}: {len(names)} class names, expected {spec.n_classes}.")
    return np.array(names)


def _parse(spec: CifarSpec, archive: Path) -> dict[str, np.ndarray]:
    members = (*spec.train_members, *spec.test_members)
    readers = {m: (lambda s: s.read()) for m in members}
    readers[spec.names_member] = lambda s: _class_names(s, spec, f"{archive}:{spec.names_member}")
    content = read_members(archive, readers)
    train = [_records(content[m], spec, f"{archive}:{m}") for m in spec.train_members]
    test = [_records(content[m], spec, f"{archive}:{m}") for m in spec.test_members]
    n_train, n_test = (sum(len(labels) for _, labels in part) for part in (train, test))
    if (n_train, n_test) != (spec.n_train, spec.n_test):
        raise DataError(
            f"{archive}: {n_train} training and {n_test} test images, expected "
            f"{spec.n_train} and {spec.n_test}."
        )
    parts = train + test
    return {
        "x": np.concatenate([images for images, _ in parts]),
        "y": np.concatenate([labels for _, labels in parts]),
        "class_names": content[spec.names_member],
    }


def _load(spec: CifarSpec, config: DatasetConfig) -> Dataset:
    path = fetch(spec.remote, download=config.download, local_path=config.path)
    key = f"{file_sha256(path)}:{spec.n_train}:{spec.n_test}"
    arrays = cached_arrays(spec.name, key, lambda: _parse(spec, path))
    x = arrays["x"].astype(np.float32)
    x /= 255.0
    return Dataset(
        name=spec.name,
        x=x,
        y=arrays["y"].astype(np.int64),
        ids=np.arange(x.shape[0]),
        num_classes=spec.n_classes,
        modality="image",
        class_names=tuple(str(n) for n in arrays["class_names"]),
    )


@register_dataset(
    "cifar10", "60,000 32x32 colour images, 10 classes (official binary files)", "image"
)
def load_cifar10(config: DatasetConfig) -> Dataset:
    """Training batches 1..5 then the test batch, images ``(n, 3, 32, 32)`` in [0, 1]."""
    return _load(CIFAR10, config)


@register_dataset(
    "cifar100", "60,000 32x32 colour images, 100 fine classes (binary files)", "image"
)
def load_cifar100(config: DatasetConfig) -> Dataset:
    """``train.bin`` then ``test.bin`` with the fine labels, images ``(n, 3, 32, 32)`` in [0, 1]."""
    return _load(CIFAR100, config)
