"""Text data sets: samples of text with stable ids and near-duplicate groups.

A :class:`TextDataset` is what a language-model audit works on: one string per sample,
an id that follows the sample into every output, and a group per sample. Samples of one
group are near duplicates of each other (:mod:`mialens.data.near_duplicates`), so an
audit makes a group all IN or all OUT. Users bring text as ``.txt`` (one sample per
line) or ``.jsonl`` (one JSON object per line, the text under a named field);
:func:`text_windows` cuts any text data set into fixed-length windows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from mialens.data.near_duplicates import near_duplicate_groups
from mialens.errors import DataError
from mialens.validation import check_ids


@dataclass(frozen=True, eq=False)
class TextDataset:
    """Texts, their unique ids, and the near-duplicate group of each (int64)."""

    name: str
    texts: tuple[str, ...]
    ids: np.ndarray
    groups: np.ndarray
    modality: str = "text"

    def __post_init__(self) -> None:
        texts = tuple(self.texts)
        if not texts:
            raise DataError(f"{self.name}: a text data set needs at least one sample.")
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise DataError(
                f"{self.name}: sample {bad} is a {type(texts[bad]).__name__}, not text."
            )
        empty = next((i for i, t in enumerate(texts) if not t.strip()), None)
        if empty is not None:
            raise DataError(f"{self.name}: sample {empty} is empty.")
        ids = check_ids(self.ids, len(texts), f"{self.name}: ids")
        groups = np.asarray(self.groups)
        if groups.shape != (len(texts),) or groups.dtype.kind not in "iu":
            raise DataError(
                f"{self.name}: groups must be {len(texts)} integers, one per sample; got "
                f"{groups.dtype} of shape {groups.shape}."
            )
        object.__setattr__(self, "texts", texts)
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "groups", groups.astype(np.int64))

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_groups(self) -> int:
        return int(np.unique(self.groups).size)

    def subset(self, index: np.ndarray) -> TextDataset:
        """The samples at positions ``index`` (order kept), as a new data set."""
        index = np.asarray(index)
        return TextDataset(
            self.name, tuple(self.texts[i] for i in index), self.ids[index], self.groups[index]
        )

    @cached_property
    def fingerprint(self) -> str:
        """A sha256 over texts, ids and groups: equal fingerprints mean equal data."""
        h = hashlib.sha256()
        for text, sample_id, group in zip(
            self.texts, self.ids.tolist(), self.groups.tolist(), strict=True
        ):
            h.update(json.dumps([text, sample_id, group]).encode())
        return h.hexdigest()


def grouped_text_dataset(
    name: str, texts: list[str], ids: np.ndarray, threshold: float | None = None
) -> TextDataset:
    """A text data set whose groups are the near duplicates among ``texts``."""
    kwargs = {} if threshold is None else {"threshold": threshold}
    return TextDataset(name, tuple(texts), ids, near_duplicate_groups(texts, **kwargs))


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise DataError(f"text file {path} does not exist.") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8.") from exc


def load_txt(path: str | Path, name: str | None = None) -> TextDataset:
    """One sample per non-empty line of a UTF-8 ``.txt`` file; ids ``<file>:<line>``
    (1-based line numbers, stable when lines are appended)."""
    path = Path(path)
    lines = _read_lines(path)
    rows = [(f"{path.name}:{i}", line) for i, line in enumerate(lines, 1) if line.strip()]
    if not rows:
        raise DataError(f"{path} holds no text: every line is empty.")
    ids, texts = zip(*rows, strict=True)
    return grouped_text_dataset(name or path.stem, list(texts), np.array(ids))


def _jsonl_record(line: str, where: str, field: str, id_field: str | None) -> tuple[str, object]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where} is not valid JSON ({exc.msg}).") from exc
    if not isinstance(record, dict):
        raise DataError(f"{where} must be a JSON object, not {type(record).__name__}.")
    for key in (field, id_field):
        if key is not None and key not in record:
            raise DataError(f"{where} has no field {key!r} (it has {sorted(record)}).")
    text = record[field]
    if not isinstance(text, str):
        raise DataError(f"{where}: field {field!r} is {type(text).__name__}, not a string.")
    return text, None if id_field is None else record[id_field]


def load_jsonl(
    path: str | Path, field: str = "text", id_field: str | None = None, name: str | None = None
) -> TextDataset:
    """One sample per non-empty line of a ``.jsonl`` file, its text under ``field``; ids
    from ``id_field`` when given, else ``<file>:<line>``."""
    path = Path(path)
    texts, ids = [], []
    for i, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        text, sample_id = _jsonl_record(line, f"{path} line {i}", field, id_field)
        texts.append(text)
        ids.append(f"{path.name}:{i}" if id_field is None else sample_id)
    if not texts:
        raise DataError(f"{path} holds no records: every line is empty.")
    return grouped_text_dataset(name or path.stem, texts, np.array(ids))


def text_windows(dataset: TextDataset, length: int, separator: str = " ") -> TextDataset:
    """The samples joined by ``separator`` and cut into consecutive windows of ``length``
    characters (the short tail is dropped).

    A window's id is ``<id>+<offset>``: the sample it starts in and the character offset
    into it, so ids stay stable while the data does. Windows are grouped anew by their own
    near duplicates (repeated passages give repeated windows).
    """
    if length < 1:
        raise DataError(f"window length must be at least 1 character, got {length}.")
    starts = np.cumsum([0] + [len(t) + len(separator) for t in dataset.texts])[:-1]
    corpus = separator.join(dataset.texts)
    offsets = range(0, len(corpus) - length + 1, length)
    if not offsets:
        raise DataError(
            f"{dataset.name} holds {len(corpus)} characters, fewer than one window of {length}."
        )
    texts, ids = [], []
    for offset in offsets:
        sample = int(np.searchsorted(starts, offset, side="right")) - 1
        texts.append(corpus[offset : offset + length])
        ids.append(f"{dataset.ids[sample]}+{offset - int(starts[sample])}")
    return grouped_text_dataset(f"{dataset.name}-windows{length}", texts, np.array(ids))
