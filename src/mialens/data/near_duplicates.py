"""Near-duplicate groups of texts, so that a group can be made all IN or all OUT.

Membership of a text is ill-defined when a near copy of it is in the other half: a model
trained on Numbers 7:19 has all but seen Numbers 7:25. The rule, exact and deterministic:

1. *normalise*: lower-case, keep runs of letters and digits as words (punctuation,
   case and spacing never separate two texts);
2. *shingle*: the set of word ``k``-grams (``k = 3`` by default; a text shorter than
   ``k`` words is one shingle of all its words);
3. two texts are *near duplicates* when the shingles they share make up at least
   ``threshold`` of *each* one's shingles, ``|A ∩ B| >= t max(|A|, |B|)`` (the smaller of
   the two containments; equal normalised texts always are);
4. *groups* are the connected components of that relation (near duplicates of near
   duplicates share a group).

Each-sided containment, not Jaccard, because a refrain makes texts share a part, not the
whole: the verses of Psalm 136 share ``for his mercy endureth for ever`` and little else
(Jaccard about 0.2, containment about 0.4). Asking the shared part to cover both texts
keeps a short formula (``And the LORD spake unto Moses, saying``) from chaining every
longer verse that quotes it into one group. The default ``t = 0.35`` was chosen on the
King James Bible: Numbers 7's offerings, the ``word of the LORD came unto`` formula and
Psalm 136's refrain are grouped, and the largest group (121 verses) is one formula.

All pairs above the threshold are found exactly, without comparing every pair, by
prefix filtering (Bayardo, Ma & Srikant 2007, "Scaling up all pairs similarity search",
WWW; Xiao et al. 2008, PPJoin): with each set's shingles ordered rarest first, two sets
sharing at least ``ceil(t |x|)`` shingles share one among the first
``|x| - ceil(t |x|) + 1`` of each, so only pairs sharing such a prefix shingle are compared.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mialens.errors import ConfigError

if TYPE_CHECKING:  # scipy.sparse loads only to group texts
    from scipy.sparse import csr_matrix

DEFAULT_THRESHOLD = 0.35
DEFAULT_SHINGLE = 3
_WORD = re.compile(r"[^\W_]+")


def normalise(text: str) -> tuple[str, ...]:
    """The words of ``text``, lower-cased, without punctuation."""
    return tuple(_WORD.findall(text.lower()))


def shingles(text: str, k: int = DEFAULT_SHINGLE) -> frozenset[tuple[str, ...]]:
    """The set of word ``k``-grams of the normalised ``text``."""
    words = normalise(text)
    if len(words) <= k:
        return frozenset([words])
    return frozenset(words[i : i + k] for i in range(len(words) - k + 1))


def containment(a: frozenset, b: frozenset) -> float:
    """``|a ∩ b| / max(|a|, |b|)``: the share of each set's elements the two have in common
    (at least; 1 for two empty sets)."""
    larger = max(len(a), len(b))
    return len(a & b) / larger if larger else 1.0


def _incidence(texts: Sequence[str], k: int) -> tuple[list[np.ndarray], int]:
    """Each text's shingles as ids ranked rarest first (ties by first appearance)."""
    ids: dict[tuple[str, ...], int] = {}
    rows = [np.array([ids.setdefault(s, len(ids)) for s in shingles(t, k)]) for t in texts]
    counts = np.bincount(np.concatenate(rows), minlength=len(ids))
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.lexsort((np.arange(len(ids)), counts))] = np.arange(len(ids))
    return [np.sort(rank[r]) for r in rows], len(ids)


def _matrix(rows: list[np.ndarray], columns: int) -> csr_matrix:
    from scipy.sparse import csr_matrix

    indptr = np.cumsum([0] + [len(r) for r in rows])
    data = np.ones(indptr[-1], dtype=np.int32)
    return csr_matrix((data, np.concatenate(rows), indptr), shape=(len(rows), columns))


def similar_pairs(
    texts: Sequence[str], threshold: float = DEFAULT_THRESHOLD, k: int = DEFAULT_SHINGLE
) -> list[tuple[int, int]]:
    """Every pair ``(i, j)``, ``i < j``, of texts whose shingle sets have
    :func:`containment` >= ``threshold``."""
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"the near-duplicate threshold must be in (0, 1], got {threshold}")
    if k < 1:
        raise ConfigError(f"the shingle length must be at least 1 word, got {k}")
    if len(texts) < 2:
        return []
    from scipy.sparse import triu

    rows, columns = _incidence(texts, k)
    sizes = np.array([len(r) for r in rows])
    prefixes = [r[: len(r) - math.ceil(threshold * len(r)) + 1] for r in rows]
    full, prefix = _matrix(rows, columns), _matrix(prefixes, columns)
    candidates = triu(prefix @ prefix.T, k=1).tocoo()
    i, j = candidates.row.astype(np.int64), candidates.col.astype(np.int64)
    overlap = np.asarray(full[i].multiply(full[j]).sum(axis=1)).ravel()
    similar = overlap / np.maximum(sizes[i], sizes[j]) >= threshold
    return sorted(zip(i[similar].tolist(), j[similar].tolist(), strict=True))


def near_duplicate_groups(
    texts: Sequence[str], threshold: float = DEFAULT_THRESHOLD, k: int = DEFAULT_SHINGLE
) -> np.ndarray:
    """Group index of each text (int64, numbered by first appearance): texts joined by a
    chain of near duplicates share a group; every other text is a group of its own."""
    n = len(texts)
    pairs = similar_pairs(texts, threshold, k)
    if not pairs:
        return np.arange(n, dtype=np.int64)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows, cols = np.array(pairs, dtype=np.int64).T
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # component -> rank of its first text
    return order[inverse].astype(np.int64)
