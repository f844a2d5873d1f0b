"""The data set registry: names, one-line descriptions and loaders, registered by the
loader modules themselves (see :mod:`mialens.data.catalog`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from mialens.data.dataset import Dataset, Modality
from mialens.data.text import TextDataset


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


Loader = Callable[[DatasetConfig], Dataset | TextDataset]


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


def registered() -> dict[str, DatasetInfo]:
    """The data sets registered so far, by name (the catalogue registers the built-in ones)."""
    return dict(_REGISTRY)
