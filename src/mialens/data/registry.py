"""The data set registry: names, one-line descriptions and loaders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from mialens.data.dataset import Dataset, Modality
from mialens.errors import unknown_name


class DatasetConfig(BaseModel):
    """Which data set to load and where from."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="registered data set name (see `mialens datasets`)")
    path: Path | None = Field(
        default=None,
        description="file for npz/csv data; for downloadable sets, a local copy of the archive "
        "or the folder holding it (skips the data directory and the download)",
    )
    label_column: str | int | None = Field(
        default=None,
        description="csv: name or index of the label column (default: the one column named "
        "label, target or y)",
    )
    id_column: str | int | None = Field(
        default=None, description="csv: name or index of a sample-id column (default: row index)"
    )
    allow_many_classes: bool = Field(
        default=False,
        description="npz/csv: accept labels with more distinct values than half the samples "
        "(refused by default: such a column is usually a feature or an id)",
    )
    download: bool = Field(
        default=True, description="allow downloading files missing from the data directory"
    )


Loader = Callable[[DatasetConfig], Dataset]


@dataclass(frozen=True)
class DatasetInfo:
    """A registered data set."""

    name: str
    description: str
    modality: Modality
    loader: Loader


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(name: str, description: str, modality: Modality) -> Callable[[Loader], Loader]:
    """Decorator that registers ``loader`` under ``name``."""

    def wrap(loader: Loader) -> Loader:
        if name in _REGISTRY:
            raise ValueError(f"data set {name!r} is registered twice")
        _REGISTRY[name] = DatasetInfo(name, description, modality, loader)
        return loader

    return wrap


def _ensure_loaded() -> None:
    # Importing the sources module registers every built-in loader.
    from mialens.data import sources  # noqa: F401


def list_datasets() -> list[DatasetInfo]:
    """Every registered data set, sorted by name."""
    _ensure_loaded()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of ``name``; raises a helpful error for unknown names."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise unknown_name("dataset", name, list(_REGISTRY))
    return _REGISTRY[name]


def load_dataset(config: DatasetConfig | str) -> Dataset:
    """Load the data set described by ``config`` (or just its name)."""
    if isinstance(config, str):
        config = DatasetConfig(name=config)
    return dataset_info(config.name).loader(config)
