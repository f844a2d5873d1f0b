"""Built-in data set loaders; importing this package registers every one of them."""

from mialens.data.sources import (
    cifar,
    csv_table,
    digits,
    fashion_mnist,
    kjv,
    npz,
    privacytrustlab,
    text_files,
)

__all__ = [
    "cifar",
    "csv_table",
    "digits",
    "fashion_mnist",
    "kjv",
    "npz",
    "privacytrustlab",
    "text_files",
]
