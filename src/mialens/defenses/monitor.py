"""A stateful query monitor: detect the query streams of membership attacks.

Label-only attacks (boundary distance, augmentation, noise robustness) query many
near-duplicates or perturbations of each candidate sample; repeated queries of one
record and out-of-distribution probes are other tell-tale signs (Li & Zhang 2025,
survey Sec. 4.2, "query auditing"). Benign traffic rarely contains two inputs closer
than the typical distance between distinct data points. The monitor keeps a sketch
(a fixed random projection) of the recent queries, calls a query *suspicious* when it
lies closer to a recent query than the ``radius_quantile`` of nearest-neighbour
distances among benign data, or farther from the benign data than its ``ood_quantile``,
and raises an alarm when the suspicious fraction of the last ``min_queries`` exceeds
``alarm_rate``. After an alarm it keeps answering (``flag``), answers uniformly
(``refuse``) or releases labels only (``degrade``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mialens.errors import DataError
from mialens.targets.adapters import PROBABILITY_FLOOR, Target


class MonitorConfig(BaseModel):
    """Calibration and alarm rule of the query monitor."""

    model_config = ConfigDict(extra="forbid")

    window: int = Field(default=2000, ge=10, description="recent queries kept")
    sketch_dim: int = Field(default=32, ge=2, description="random-projection dimension")
    radius_quantile: float = Field(default=0.01, gt=0.0, lt=0.5)
    ood_quantile: float = Field(default=0.995, gt=0.5, lt=1.0)
    min_queries: int = Field(default=100, ge=10)
    alarm_rate: float = Field(default=0.2, gt=0.0, lt=1.0)
    action: Literal["flag", "refuse", "degrade"] = "refuse"
    seed: int = 0


class QueryMonitor(Target):
    """A target wrapper that audits every query before answering it."""

    def __init__(self, inner: Target, benign_x: np.ndarray, config: MonitorConfig | None = None):
        super().__init__(inner.num_classes)
        self.inner = inner
        self.config = config or MonitorConfig()
        benign = np.asarray(benign_x, dtype=np.float64).reshape(len(benign_x), -1)
        if len(benign) < 20:
            raise DataError("the query monitor needs at least 20 benign samples to calibrate")
        rng = np.random.default_rng(self.config.seed)
        self._projection = rng.normal(size=(benign.shape[1], self.config.sketch_dim))
        self._projection /= np.sqrt(self.config.sketch_dim)
        self._benign = benign @ self._projection
        nn = _nearest(self._benign, self._benign, exclude_self=True)
        self.radius = float(np.quantile(nn, self.config.radius_quantile))
        self.ood_radius = float(np.quantile(nn, self.config.ood_quantile))
        self._recent = np.empty((0, self.config.sketch_dim))
        self._flags: list[bool] = []
        self.alarm_at: int | None = None

    @property
    def suspicious(self) -> int:
        return int(np.sum(self._flags))

    def _logits(self, x: np.ndarray) -> np.ndarray:
        first = len(self._flags)  # stream index of this batch's first query
        self._audit(x.reshape(len(x), -1).astype(np.float64) @ self._projection)
        logits = self.inner.logits(x)
        if self.alarm_at is None or self.config.action == "flag":
            return logits
        # only the queries from the alarming one on; earlier queries of the batch are answered
        after = first + np.arange(len(x)) >= self.alarm_at
        out = logits.copy()
        if self.config.action == "refuse":
            out[after] = 0.0
            return out
        degraded = np.full_like(logits, np.log(PROBABILITY_FLOOR))
        degraded[np.arange(len(x)), logits.argmax(axis=1)] = 0.0
        out[after] = degraded[after]
        return out

    def _audit(self, sketch: np.ndarray, chunk: int = 1024) -> None:
        """Flag each query of the batch in order and update the alarm."""
        from scipy.spatial.distance import cdist  # scipy.spatial loads only with a monitor

        cfg = self.config
        for s in range(0, len(sketch), chunk):
            batch = sketch[s : s + chunk]
            # nearest earlier query: in the window, or earlier in this chunk
            within = cdist(batch, batch)
            within[np.triu_indices(len(batch))] = np.inf
            near = within.min(axis=1)
            if len(self._recent):
                near = np.minimum(near, cdist(batch, self._recent).min(axis=1))
            far = _nearest(batch, self._benign) > self.ood_radius
            start = len(self._flags)
            self._flags.extend(((near < self.radius) | far).tolist())
            self._recent = np.vstack([self._recent, batch])[-cfg.window :]
            # a window needs min_queries queries (np.convolve's "valid" would otherwise
            # swap its arguments and rate a shorter stream against a future window)
            if self.alarm_at is None and len(self._flags) >= cfg.min_queries:
                flags = np.asarray(self._flags[max(0, start - cfg.min_queries + 1) :], float)
                rates = np.convolve(flags, np.ones(cfg.min_queries), "valid") / cfg.min_queries
                hits = np.flatnonzero(rates > cfg.alarm_rate)
                if hits.size:  # index of the query that completed the first alarming window
                    self.alarm_at = (
                        max(0, start - cfg.min_queries + 1) + int(hits[0]) + cfg.min_queries - 1
                    )


def _nearest(queries: np.ndarray, points: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """Euclidean distance of every query to its nearest point (in chunks)."""
    from scipy.spatial.distance import cdist

    out = np.empty(len(queries))
    for s in range(0, len(queries), 1024):
        d = cdist(queries[s : s + 1024], points)
        if exclude_self:
            rows = np.arange(d.shape[0])
            d[rows, rows + s] = np.inf
        out[s : s + 1024] = d.min(axis=1)
    return out
