"""The catalogue of data sets: every built-in loader registered, listed and loaded by
name."""

from __future__ import annotations

from mialens.data import sources  # noqa: F401  (importing it registers every built-in loader)
from mialens.data.dataset import Dataset
from mialens.data.registry import DatasetConfig, DatasetInfo, registered
from mialens.data.text import TextDataset
from mialens.errors import unknown_name


def list_datasets() -> list[DatasetInfo]:
    """Every registered data set, sorted by name."""
    known = registered()
    return [known[k] for k in sorted(known)]


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of ``name``; raises a helpful error for unknown names."""
    known = registered()
    if name not in known:
        raise unknown_name("dataset", name, list(known))
    return known[name]


def load_dataset(config: DatasetConfig | str) -> Dataset | TextDataset:
    """Load the data set described by ``config`` (or just its name)."""
    if isinstance(config, str):
        config = DatasetConfig(name=config)
    return dataset_info(config.name).loader(config)
