"""A user's own text as a data set: ``txt`` (one sample per line) and ``jsonl`` (one JSON
object per line, the text under ``"text"``), both read by :mod:`mialens.data.text` and
grouped by near duplicates."""

from __future__ import annotations

from mialens.data.registry import DatasetConfig, register_dataset
from mialens.data.text import TextDataset, load_jsonl, load_txt
from mialens.errors import ConfigError


def _path(config: DatasetConfig, kind: str):
    if config.path is None:
        raise ConfigError(f"dataset {kind!r} reads a file: give dataset.path")
    if config.label_column is not None:
        raise ConfigError(f"dataset {kind!r} holds text without labels: drop label_column")
    return config.path


@register_dataset("txt", "your UTF-8 text file (dataset.path), one sample per line", "text")
def load_text_lines(config: DatasetConfig) -> TextDataset:
    """Every non-empty line of ``config.path``; ids ``<file>:<line>``."""
    if config.id_column is not None:
        raise ConfigError("dataset 'txt' has no id column: its ids are <file>:<line>")
    return load_txt(_path(config, "txt"))


@register_dataset(
    "jsonl",
    'your JSON-lines file (dataset.path): text under "text", ids under id_column if given',
    "text",
)
def load_text_records(config: DatasetConfig) -> TextDataset:
    """Every record of ``config.path``, its text under ``"text"``; ids from the field
    ``config.id_column`` when given, else ``<file>:<line>``."""
    id_field = config.id_column
    if isinstance(id_field, int):
        raise ConfigError("jsonl: id_column names a field of the records, not an index")
    return load_jsonl(_path(config, "jsonl"), id_field=id_field)
