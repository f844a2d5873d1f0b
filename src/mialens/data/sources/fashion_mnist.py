"""Fashion-MNIST (Xiao et al. 2017): 70,000 28x28 grayscale clothing images, 10 classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mialens.data.dataset import Dataset
from mialens.data.download import RemoteFile, fetch, file_sha256
from mialens.data.registry import DatasetConfig, register_dataset
from mialens.data.sources.cache import cached_arrays
from mialens.data.sources.idx import read_idx_gz
from mialens.errors import DataError

# Folder of the Debian/Ubuntu package dataset-fashion-mnist: used first when complete.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

_MIRRORS = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)


def _remote(filename: str, md5: str, sha256: str, size: int, payload_sha256: str) -> RemoteFile:
    urls = tuple(mirror + filename for mirror in _MIRRORS)
    return RemoteFile(filename, urls, sha256, md5, size, payload_sha256)


# md5: pytorch/vision torchvision/datasets/mnist.py (FashionMNIST.resources), the md5s of
#      Zalando's README. sha256 and size: tensorflow/datasets url_checksums/fashion_mnist.txt.
# payload_sha256: sha256 of the decompressed IDX bytes, measured on the Debian package
#      dataset-fashion-mnist (its .gz files are re-compressed, so their md5 differs).
FILES = {
    "train-images": _remote(
        "train-images-idx3-ubyte.gz",
        md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        sha256="3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        size=26421880,
        payload_sha256="c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    "train-labels": _remote(
        "train-labels-idx1-ubyte.gz",
        md5="25c81989df183df01b3e8a0aad5dffbe",
        sha256="a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        size=29515,
        payload_sha256="bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    "t10k-images": _remote(
        "t10k-images-idx3-ubyte.gz",
        md5="bef4ecab320f06d8554ea6380940ec79",
        sha256="346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        size=4422102,
        payload_sha256="5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    "t10k-labels": _remote(
        "t10k-labels-idx1-ubyte.gz",
        md5="bb300cfdad3c16e7a12a480ee83cd310",
        sha256="67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        size=5148,
        payload_sha256="0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}

SPLIT_SIZES = {"train": 60_000, "t10k": 10_000}
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def _read_split(paths: dict[str, Path], split: str) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = paths[f"{split}-images"], paths[f"{split}-labels"]
    images, labels = read_idx_gz(images_path), read_idx_gz(labels_path)
    n = SPLIT_SIZES[split]
    if images.dtype != np.uint8 or images.shape != (n, 28, 28):
        raise DataError(
            f"{images_path}: expected {n} uint8 images of 28x28, got {images.dtype} {images.shape}."
        )
    if labels.dtype != np.uint8 or labels.shape != (n,):
        raise DataError(
            f"{labels_path}: expected {n} uint8 labels, got {labels.dtype} {labels.shape}."
        )
    if labels.max() >= len(CLASS_NAMES):
        raise DataError(f"{labels_path}: label {labels.max()} outside 0..{len(CLASS_NAMES) - 1}.")
    return images, labels


def _parse(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    splits = [_read_split(paths, split) for split in SPLIT_SIZES]
    return {
        "x": np.concatenate([images for images, _ in splits]),
        "y": np.concatenate([labels for _, labels in splits]),
    }


@register_dataset("fashion-mnist", "Zalando's 70,000 28x28 clothing images, 10 classes", "image")
def load_fashion_mnist(config: DatasetConfig) -> Dataset:
    """Train (ids 0..59999) then test (60000..69999), images ``(n, 1, 28, 28)`` in [0, 1].

    Files come from ``config.path``, else the Debian package folder, else the data
    directory or a download of Zalando's original IDX files.
    """
    local = config.path
    if local is None and all((DEBIAN_DIR / r.filename).is_file() for r in FILES.values()):
        local = DEBIAN_DIR
    paths = {
        key: fetch(remote, download=config.download, local_path=local)
        for key, remote in FILES.items()
    }
    key = ":".join([*(file_sha256(p) for p in paths.values()), repr(SPLIT_SIZES)])
    arrays = cached_arrays("fashion-mnist", key, lambda: _parse(paths))
    x = arrays["x"][:, None].astype(np.float32)
    x /= 255.0
    return Dataset(
        name="fashion-mnist",
        x=x,
        y=arrays["y"].astype(np.int64),
        ids=np.arange(x.shape[0]),
        num_classes=len(CLASS_NAMES),
        modality="image",
        class_names=CLASS_NAMES,
    )
