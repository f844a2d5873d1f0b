"""Secret-sharer canaries: a template with a random secret, inserted into text data.

Carlini et al. 2019 ("The Secret Sharer: Evaluating and Testing Unintended Memorization
in Neural Networks", USENIX Security, Sec. 4) measure memorisation with *canaries*: a
format such as ``"my secret number is {secret}"`` whose secret is drawn uniformly from a
randomness space ``R`` (here every string of ``length`` characters of ``alphabet``), and
inserted into the training data a chosen number of times. :class:`SecretFormat` is that
format and its candidate space; :func:`insert_canaries` draws ``per_repetition`` distinct
secrets for each repetition count and appends the copies to a :class:`TextDataset`
(:func:`make_canaries` makes the copies alone, for a pipeline that appends them itself).

Every canary is ONE group (all its copies share it, and no other sample does), so an
audit's group-level keep mask makes all its copies IN or all OUT together and, like every
other sample, IN for half of the models. Canaries of one format are near duplicates of
each other by construction (they differ only in the secret), so the audit must take the
groups of the returned data set as they are rather than regroup it. Ids are stable and
distinct from the data's: canary ``k`` of repetition count ``r`` is ``<name>-r<r>-<k>``
and its copy ``j`` is ``<name>-r<r>-<k>#c<j>`` (e.g. ``canary-r16-03#c07``; a second set
of canaries, of another format, needs another ``name``). The :class:`CanaryRecord`
(secrets, template, counts, copy positions) serialises to JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mialens.data.text import TextDataset
from mialens.errors import ConfigError, DataError
from mialens.seeding import rng

SECRET_SLOT = "{secret}"
DEFAULT_NAME = "canary"
EXTRAPOLATION_MIN_SPACE = 10**6  # the extrapolated exposure needs a candidate space this big
DEFAULT_SAMPLE = 10_000  # candidates sampled for the skew-normal fit of the exposure
_MAX_SPACE = 2**62  # candidate indices are int64


class SecretFormat(BaseModel):
    """A canary template with one secret slot and the space its secret is drawn from.

    The default, ``"my secret number is {secret}"`` with 6 random digits, is in the
    spirit of the paper's ``"my social security number is ..."`` canaries: a candidate
    space of ``10**6``. A space under ``10**6`` is refused unless ``exact_only``: exposure
    is then only computed exactly, by enumerating every candidate.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    template: str = Field(default="my secret number is {secret}", description="one {secret}")
    alphabet: str = Field(default="0123456789", description="the characters of a secret")
    length: int = Field(default=6, ge=1, description="characters in a secret")
    exact_only: bool = Field(
        default=False, description="allow a space under 10**6 (exact exposure only)"
    )

    @model_validator(mode="after")
    def _valid_space(self) -> SecretFormat:
        if self.template.count(SECRET_SLOT) != 1:
            raise ValueError(
                f"the template must hold {SECRET_SLOT} exactly once: {self.template!r}"
            )
        if len(set(self.alphabet)) != len(self.alphabet) or len(self.alphabet) < 2:
            raise ValueError(f"the alphabet needs 2 or more distinct characters: {self.alphabet!r}")
        if self.space_size > _MAX_SPACE:
            raise ValueError(f"{self.space_size} candidates exceed 2**62; shorten the secret")
        if self.space_size < EXTRAPOLATION_MIN_SPACE and not self.exact_only:
            raise ValueError(
                f"{len(self.alphabet)}**{self.length} = {self.space_size} candidate secrets "
                f"are fewer than the {EXTRAPOLATION_MIN_SPACE:,} the extrapolated exposure "
                "needs; lengthen the secret, or set exact_only to measure exposure exactly"
            )
        return self

    @property
    def space_size(self) -> int:
        """``|R|``: the number of candidate secrets."""
        return len(self.alphabet) ** self.length

    def secrets(self, index: Sequence[int] | np.ndarray) -> list[str]:
        """The candidate secrets at ``index`` (base ``len(alphabet)`` numerals, most
        significant character first: index 0 is the first character repeated)."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.space_size):
            raise DataError(f"candidate indices must lie in [0, {self.space_size})")
        base = len(self.alphabet)
        powers = base ** np.arange(self.length - 1, -1, -1, dtype=np.int64)
        digits = (index[:, None] // powers) % base
        table = np.array(list(self.alphabet))
        return ["".join(row) for row in table[digits]]

    def index_of(self, secret: str) -> int:
        """The candidate index of ``secret`` (the inverse of :meth:`secrets`)."""
        if len(secret) != self.length or any(c not in self.alphabet for c in secret):
            raise DataError(f"{secret!r} is not a secret of {self.length} of {self.alphabet!r}")
        index = 0
        for char in secret:
            index = index * len(self.alphabet) + self.alphabet.index(char)
        return index

    def text(self, secret: str) -> str:
        """The template with ``secret`` in its slot."""
        return self.template.replace(SECRET_SLOT, secret)


@dataclass(frozen=True)
class SecretCanary:
    """One canary: its secret and text, how often it was inserted, its group, and the ids
    and positions (in the data set :func:`insert_canaries` returned) of its copies."""

    canary_id: str
    secret: str
    text: str
    repetitions: int
    group: int
    copy_ids: tuple[str, ...]
    positions: tuple[int, ...]


@dataclass(frozen=True)
class CanaryRecord:
    """What :func:`insert_canaries` inserted: the format, the seed and every canary."""

    format: SecretFormat
    seed: int
    canaries: tuple[SecretCanary, ...]

    @property
    def repetition_counts(self) -> list[int]:
        return sorted({c.repetitions for c in self.canaries})

    @property
    def secret_indices(self) -> np.ndarray:
        """The candidate index of every canary's secret, in record order."""
        return np.array([self.format.index_of(c.secret) for c in self.canaries], dtype=np.int64)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format.model_dump(),
            "seed": self.seed,
            "canaries": [
                {**vars(c), "copy_ids": list(c.copy_ids), "positions": list(c.positions)}
                for c in self.canaries
            ],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CanaryRecord:
        canaries = tuple(
            SecretCanary(
                **{**c, "copy_ids": tuple(c["copy_ids"]), "positions": tuple(c["positions"])}
            )
            for c in doc["canaries"]
        )
        return cls(SecretFormat(**doc["format"]), int(doc["seed"]), canaries)


def _check_counts(repetitions: Sequence[int], per_repetition: int) -> list[int]:
    counts = list(repetitions)
    if not counts or any(int(r) < 1 for r in counts) or len(set(counts)) != len(counts):
        raise ConfigError(f"repetitions must be distinct counts of at least 1, got {counts}")
    if per_repetition < 1:
        raise ConfigError(f"per_repetition must be at least 1, got {per_repetition}")
    return [int(r) for r in counts]


def make_canaries(
    repetitions: Sequence[int] = (1, 4, 16),
    per_repetition: int = 8,
    seed: int = 0,
    secret_format: SecretFormat | None = None,
    name: str = DEFAULT_NAME,
) -> tuple[TextDataset, CanaryRecord]:
    """The copies of ``per_repetition`` canaries per count in ``repetitions`` (canary of
    count ``r`` copied ``r`` times, canary by canary) as a data set of their own, with
    groups ``0..K-1`` (one per canary), and the record, whose positions and groups are
    those of this data set. Secrets are distinct and uniform over the format's space,
    drawn from ``seed`` and ``name`` alone. It is what a text audit appends to its pool
    (e.g. the ``extra_pool`` of ``prepare_text_audit``); the summaries find the copies by
    their ids, wherever they end up."""
    fmt = secret_format or SecretFormat()
    counts = _check_counts(repetitions, per_repetition)
    total = len(counts) * per_repetition
    if total > fmt.space_size:
        raise ConfigError(f"{total} canaries need more secrets than the {fmt.space_size} there are")
    drawn = rng(seed, "secret-canaries", name).choice(fmt.space_size, size=total, replace=False)
    secrets = iter(fmt.secrets(drawn))
    texts, ids, canaries = [], [], []
    k_width, c_width = max(2, len(str(per_repetition - 1))), max(2, len(str(max(counts) - 1)))
    for r in counts:
        for k in range(per_repetition):
            secret, group = next(secrets), len(canaries)
            canary_id = f"{name}-r{r}-{k:0{k_width}d}"
            copy_ids = tuple(f"{canary_id}#c{j:0{c_width}d}" for j in range(r))
            positions = tuple(range(len(texts), len(texts) + r))
            text = fmt.text(secret)
            texts += [text] * r
            ids += copy_ids
            canaries.append(SecretCanary(canary_id, secret, text, r, group, copy_ids, positions))
    groups = np.repeat(np.arange(len(canaries), dtype=np.int64), [c.repetitions for c in canaries])
    return (
        TextDataset(name, tuple(texts), np.array(ids), groups),
        CanaryRecord(fmt, int(seed), tuple(canaries)),
    )


def insert_canaries(
    dataset: TextDataset,
    repetitions: Sequence[int] = (1, 4, 16),
    per_repetition: int = 8,
    seed: int = 0,
    secret_format: SecretFormat | None = None,
    name: str = DEFAULT_NAME,
) -> tuple[TextDataset, CanaryRecord]:
    """``dataset`` with the copies of :func:`make_canaries` appended after the data, each
    canary's group numbered above the data's, and the record (positions and groups in the
    returned data set). The returned data set's ids are strings (the data's as text)."""
    prefix = f"{name}-r"
    clash = [i for i in dataset.ids.astype(str).tolist() if i.startswith(prefix)]
    if clash:
        raise DataError(
            f"{dataset.name} already holds ids starting with {prefix!r} (e.g. {clash[0]!r}); "
            "canary ids must be distinct from the data's: give these canaries another name"
        )
    extra, record = make_canaries(repetitions, per_repetition, seed, secret_format, name)
    offset, base = len(dataset), int(dataset.groups.max()) + 1
    moved = tuple(
        replace(c, group=c.group + base, positions=tuple(p + offset for p in c.positions))
        for c in record.canaries
    )
    out = TextDataset(
        f"{dataset.name}+canaries",
        dataset.texts + extra.texts,
        np.concatenate([dataset.ids.astype(str), extra.ids]),
        np.concatenate([dataset.groups, extra.groups + base]),
    )
    return out, replace(record, canaries=moved)
