"""Outlierness of every text of a language-model audit's pool.

Model-free measures (the text alone, relative to the other pool texts; words are the
lower-cased ``\\w+`` runs of a text):

``mean_idf``
    mean inverse document frequency ``log(N / df(w))`` over the text's distinct words,
    ``df(w)`` the number of the ``N`` pool texts holding word ``w`` (Sparck Jones 1972):
    high for texts made of rare words.
``max_idf``
    the IDF of the text's rarest word.
``unique_trigrams``
    share of the text's distinct word 3-grams that no other pool text holds (0 for a
    text of fewer than three words).
``tokens``
    the text's length in the LM's tokens (its scored tokens).
``group_size``
    the number of pool texts in its near-duplicate group: repeated training sequences
    are memorised more (Kandpal et al. 2022, "Deduplicating training data mitigates
    privacy risks in language models").

Model-based measure (the audit's LMs):

``out_token_loss``
    the mean next-token loss (nats per token) of the text under the LMs that did not
    train on it (its OUT reference LMs), averaged over them: the text's difficulty.

*Groups*, kept apart as in the classifier analysis: ``text`` (the model-free measures)
and ``output`` (the model-based one, which partly restates the LOSS attack's signal).
Higher values are not always "more atypical" (``group_size``): an AUC below 0.5 says
the low values are the vulnerable ones.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from mialens.errors import DataError

TEXT_MEASURES = ("mean_idf", "max_idf", "unique_trigrams", "tokens", "group_size")
OUTPUT_MEASURES = ("out_token_loss",)
TEXT_GROUPS = {
    "text": "rarity, length and repetition of the text itself (no model)",
    "output": "difficulty as the OUT reference LMs see it (their mean token loss)",
}
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The lower-cased word runs of ``text``."""
    return _WORD.findall(text.lower())


def idf_measures(texts: list[str]) -> dict[str, np.ndarray]:
    """``mean_idf`` and ``max_idf`` of every text among ``texts`` (NaN without words)."""
    vocab = [set(words(t)) for t in texts]
    df = Counter(w for v in vocab for w in v)
    n = len(texts)
    idf = [np.array([np.log(n / df[w]) for w in v]) for v in vocab]
    return {
        "mean_idf": np.array([v.mean() if v.size else np.nan for v in idf]),
        "max_idf": np.array([v.max() if v.size else np.nan for v in idf]),
    }


def unique_trigram_share(texts: list[str]) -> np.ndarray:
    """Share of each text's distinct word 3-grams held by no other text of ``texts``."""
    grams = []
    for t in texts:
        w = words(t)
        grams.append({tuple(w[i : i + 3]) for i in range(len(w) - 2)})
    seen = Counter(g for s in grams for g in s)
    return np.array([np.mean([seen[g] == 1 for g in s]) if s else 0.0 for s in grams])


def group_sizes(groups: np.ndarray) -> np.ndarray:
    """How many samples share each sample's group."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return counts[inverse].astype(np.int64)


def out_token_loss(logprob: np.ndarray, lengths: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Mean over OUT models of each sample's mean token loss: ``logprob (M, n, T)`` holds
    every model's per-token log-probabilities (zeros after ``lengths (n,)``), ``members
    (M, n)`` the membership."""
    lp = np.asarray(logprob, dtype=np.float64)
    m = np.asarray(members, dtype=bool)
    lengths = np.asarray(lengths)
    if lp.shape[:2] != m.shape or lp.shape[1] != lengths.size or (lengths < 1).any():
        raise DataError(
            f"token log-probabilities {lp.shape[:2]}, membership {m.shape} and lengths "
            f"{lengths.shape} disagree, or a sample has no scored token"
        )
    out = ~m
    if not out.any(axis=0).all():
        raise DataError("out_token_loss needs every sample OUT for at least one LM")
    mask = np.arange(lp.shape[2]) < lengths[:, None]
    loss = -np.where(mask, lp, 0.0).sum(axis=2) / lengths  # (M, n)
    return np.where(out, loss, 0.0).sum(axis=0) / out.sum(axis=0)


def text_measures(
    texts: list[str], groups: np.ndarray, lengths: np.ndarray
) -> dict[str, np.ndarray]:
    """The model-free measures of the module docstring, in :data:`TEXT_MEASURES` order."""
    if not (len(texts) == len(groups) == len(lengths)):
        raise DataError(
            f"{len(texts)} texts, {len(groups)} groups and {len(lengths)} lengths disagree"
        )
    measures = idf_measures(texts)
    measures["unique_trigrams"] = unique_trigram_share(texts)
    measures["tokens"] = np.asarray(lengths, dtype=np.int64)
    measures["group_size"] = group_sizes(np.asarray(groups))
    return measures


def text_measure_group(name: str) -> str:
    """The group (a key of :data:`TEXT_GROUPS`) of a measure."""
    return "output" if name in OUTPUT_MEASURES else "text"
