"""Data sets: the :class:`Dataset` container, the registry and the loaders."""

from mialens.data.catalog import dataset_info, list_datasets, load_dataset
from mialens.data.dataset import Dataset, Modality
from mialens.data.registry import DatasetConfig, DatasetInfo, register_dataset

__all__ = [
    "Dataset",
    "DatasetConfig",
    "DatasetInfo",
    "Modality",
    "dataset_info",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
