"""Canaries for a one-run DP audit, each included independently with probability 1/2.

Steinke, Nasr & Jagielski 2023 (*Privacy Auditing with One (1) Training Run*, Alg. 1) draw
every canary's inclusion bit independently: the audit's complementary pairs would not do,
since a pair's IN/OUT counts and its complement tell the auditor one bit from the other.
:func:`inclusion_bits` draws them; :func:`make_input_canaries` builds the input-space
canaries (samples added to the training data when included):

* ``mislabeled``: samples of the pool that train nothing else, each relabelled to a seeded
  other class (Steinke et al. 2023, Sec. 7, audit with mislabeled examples);
* ``ood``: inputs from outside the data distribution: for binary data (every value 0 or 1)
  independent random bits, otherwise each feature uniform in the pool's range of that
  feature; labels uniform (the "out-of-distribution" canaries of Aerni et al. 2024 and
  of Annamalai & De Cristofaro 2024);
* ``crafted``: inputs chosen to be easy to memorise, after the clip-aware poisoning of
  Jagielski, Ullman & Oprea 2020 (*Auditing Differentially Private Machine Learning: How
  Private is Private SGD?*, ClipBKD, Alg. 2): a point far out along the directions in
  which the pool varies least (its smallest principal components), where no data point's
  gradient competes with the canary's. Each canary takes its own random unit direction
  in that subspace (a unique pattern), at the pool's largest distance from its mean,
  with a uniform label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mialens.errors import ConfigError
from mialens.seeding import rng

CanaryKind = Literal["mislabeled", "ood", "crafted"]
KINDS: tuple[str, ...] = ("mislabeled", "ood", "crafted")
ID_PREFIX = "canary-"
_CRAFTED_DIRECTIONS = 16  # the smallest principal components a crafted canary spans
_PCA_ROWS = 4096  # pool rows the principal components are computed on (seeded subset)


def inclusion_bits(count: int, seed: int) -> np.ndarray:
    """``count`` independent inclusion bits, each True with probability 1/2 (seeded)."""
    check_count(count)
    return rng(seed, "canary-inclusion").random(count) < 0.5


def check_count(count: int) -> int:
    """A canary count of at least 2 (one canary certifies nothing), else a ConfigError."""
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 2:
        raise ConfigError(f"an audit needs at least 2 canaries (an integer), got {count!r}.")
    return int(count)


def canary_ids(count: int) -> np.ndarray:
    """``canary-00000``, ``canary-00001``, ...: the ids of ``count`` canaries."""
    width = max(5, len(str(count - 1)))
    return np.array([f"{ID_PREFIX}{i:0{width}d}" for i in range(count)])


@dataclass(frozen=True, eq=False)
class InputCanaries:
    """Input-space canaries: ``x (m, ...)``, labels ``y (m,)``, ``included (m,)`` bits.

    ``source_ids`` are the pool ids the canaries were made from (``mislabeled``), else
    None; ``seed`` drew everything, bits included.
    """

    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    included: np.ndarray
    kind: str
    seed: int
    source_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def to_json(self) -> dict[str, Any]:
        """The record of the canary set: kind, seed, count and the inclusion bits."""
        return {
            "kind": self.kind,
            "seed": self.seed,
            "m": len(self),
            "included": int(self.included.sum()),
            "inclusion_bits": "".join("1" if b else "0" for b in self.included),
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the set under a name, for ``np.savez`` (no object arrays)."""
        out = {
            "ids": self.ids.astype(str),
            "x": self.x,
            "y": self.y,
            "included": self.included,
        }
        if self.source_ids is not None:
            out["source_ids"] = self.source_ids.astype(str)
        return out


def make_input_canaries(
    x_pool: np.ndarray,
    y_pool: np.ndarray,
    ids_pool: np.ndarray,
    num_classes: int,
    *,
    kind: str,
    count: int,
    seed: int,
) -> InputCanaries:
    """``count`` canaries of ``kind`` (module docstring) with independent inclusion bits.

    ``x_pool``/``y_pool``/``ids_pool`` are samples that train nothing else: the sources of
    ``mislabeled`` canaries, and the data whose range and principal directions ``ood`` and
    ``crafted`` canaries leave.
    """
    count = check_count(count)
    if kind not in KINDS:
        raise ConfigError(f"unknown canary kind {kind!r}; choose one of {', '.join(KINDS)}.")
    if num_classes < 2:
        raise ConfigError(f"canaries need at least 2 classes, got {num_classes}.")
    x_pool = np.asarray(x_pool, dtype=np.float32)
    if len(x_pool) == 0 or len(y_pool) != len(x_pool) or len(ids_pool) != len(x_pool):
        raise ConfigError("the canary pool needs samples, with one label and one id each.")
    if kind == "mislabeled" and count > len(x_pool):
        raise ConfigError(
            f"{count} mislabeled canaries need {count} pool samples that train nothing "
            f"else; the pool has {len(x_pool)}: use fewer canaries or a larger pool."
        )
    gen = rng(seed, "input-canaries", kind)
    source_ids = None
    if kind == "mislabeled":
        chosen = np.sort(gen.choice(len(x_pool), count, replace=False))
        x = x_pool[chosen].copy()
        y = (np.asarray(y_pool)[chosen] + gen.integers(1, num_classes, count)) % num_classes
        source_ids = np.asarray(ids_pool)[chosen].astype(str)
    else:
        x = _ood(x_pool, count, gen) if kind == "ood" else _crafted(x_pool, count, gen)
        y = gen.integers(0, num_classes, count)
    return InputCanaries(
        ids=canary_ids(count),
        x=x.astype(np.float32),
        y=y.astype(np.int64),
        included=inclusion_bits(count, seed),
        kind=kind,
        seed=int(seed),
        source_ids=source_ids,
    )


def _ood(x_pool: np.ndarray, count: int, gen: np.random.Generator) -> np.ndarray:
    """Random bits for binary data, else each feature uniform in its pool range."""
    shape = (count, *x_pool.shape[1:])
    if np.isin(x_pool, (0.0, 1.0)).all():
        return (gen.random(shape) < 0.5).astype(np.float32)
    low, high = x_pool.min(axis=0), x_pool.max(axis=0)
    return (low + (high - low) * gen.random(shape)).astype(np.float32)


def _crafted(x_pool: np.ndarray, count: int, gen: np.random.Generator) -> np.ndarray:
    """Points at the pool's radius along random directions of its least-varying principal
    subspace (ClipBKD's direction, Jagielski et al. 2020, Alg. 2)."""
    flat = x_pool.reshape(len(x_pool), -1).astype(np.float64)
    rows = flat[np.sort(gen.choice(len(flat), min(len(flat), _PCA_ROWS), replace=False))]
    mean = rows.mean(axis=0)
    _, _, vt = np.linalg.svd(rows - mean, full_matrices=False)  # rows by decreasing variance
    basis = vt[-min(_CRAFTED_DIRECTIONS, len(vt)) :]
    mix = gen.normal(size=(count, len(basis)))
    directions = mix @ basis
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    radius = np.linalg.norm(flat - mean, axis=1).max()
    points = mean + max(radius, 1.0) * directions
    return points.reshape(count, *x_pool.shape[1:]).astype(np.float32)
