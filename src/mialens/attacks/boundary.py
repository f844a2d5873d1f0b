"""Boundary-distance attack: how far must a sample move before the label changes?

Choquette-Choo et al. 2021 (ICML, the "decision boundary distance" attack) and Li &
Zhang 2021 (CCS, the "boundary attack"): members lie farther from the target's decision
boundary than non-members. With labels only, the L2 distance to the boundary is
estimated by a decision-based adversarial search, HopSkipJump (Chen, Jordan &
Wainwright 2020, S&P; untargeted, L2 version): from a misclassified starting point
found by uniform noise, alternate (i) a binary search along the segment to the sample,
which lands on the boundary at distance ``d_t`` (to a precision of ``0.01 / sqrt(d)``
of the segment by default), (ii) a Monte-Carlo estimate of the
boundary's normal from the labels of ``B_t = min(init_eval * sqrt(t + 1), max_eval)``
random unit probes ``u_b`` at radius ``delta * d_t`` around the boundary point (a
tenth of the data range at the first iteration, as in the authors' code):
``mean_b (phi_b - mean(phi)) u_b`` with ``phi_b = +1`` where the label flips, else -1
(the authors' baseline-corrected estimate), and (iii) a geometric step-size search
along it (``eps = d_t / sqrt(t + 1)``, halved until the step stays misclassified). The
membership score is the smallest distance found; a misclassified sample has distance 0
(Choquette-Choo et al.).

Unlike the per-sample loop of the reference implementations (ART's
``HopSkipJump``), every step runs for all samples at once: one batched label query per
step. Each sample has a hard query budget ``max_queries`` (counted by the label-only
view of the target), spent to the end: the last gradient estimate of a sample uses as
many probes as it can still afford while keeping one step and one bisection.

Calibration of the decision threshold ``tau`` (the score is ``distance - tau``, so the
paper's decision is ``score > 0``; the ROC is the same for every calibration):

* ``unsupervised`` (Li & Zhang 2021's threshold choosing; ART's
  ``calibrate_distance_threshold_unsupervised``): run the same search on
  ``calibration_samples`` random inputs drawn uniformly in the data's range, labelled
  by the target's own predictions (these queries count), and take the ``top_t``-th
  percentile of their distances: random inputs stand for non-members;
* ``supervised`` (Choquette-Choo et al. 2021 choose the threshold on a shadow model;
  ART's ``calibrate_distance_threshold``): run it on one reference model for
  ``calibration_samples`` pool samples it did and did not train on, and take the
  threshold that maximises the balanced accuracy there;
* ``none``: ``tau = 0``.

Departures: the returned distance is the smallest over all boundary points visited (ART
returns the last iterate, whose final step is not projected back to the boundary, which
only over-estimates the distance); a sample for which no misclassified starting point
is found within ``init_tries`` draws gets the diameter of the data box (ART returns the
sample itself, i.e. distance 0, which calls the most robust samples non-members).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from mialens.attacks.adversary_data import data_box
from mialens.attacks.base import AttackParams, Needs, QueryAttack, QueryData, QueryReferences
from mialens.attacks.networks import single_threaded
from mialens.attacks.threshold import best_threshold
from mialens.seeding import int_seed, rng
from mialens.targets.adapters import Target

_MAX_PROBE_ELEMENTS = 1 << 23  # probe features held at once (32 MiB of float32 per tensor)


class BoundaryParams(AttackParams):
    max_queries: int = Field(default=300, ge=30, description="label queries per sample")
    init_eval: int = Field(default=20, ge=2, description="probes of the first gradient estimate")
    max_eval: int = Field(default=100, ge=2, description="most probes of one gradient estimate")
    init_tries: int = Field(default=20, ge=1, description="uniform draws to find a start")
    binary_steps: int | None = Field(
        default=None,
        ge=1,
        description="bisection steps per projection (default: HopSkipJump's precision "
        "theta = 0.01 / sqrt(d) of the segment, log2(sqrt(d) / 0.01) steps)",
    )
    step_halvings: int = Field(default=8, ge=1, description="most halvings of a step")
    delta: float = Field(
        default=0.01,
        gt=0,
        description="probe radius relative to the distance (the first: 0.1 of the data range)",
    )
    calibration: Literal["unsupervised", "supervised", "none"] = "unsupervised"
    calibration_samples: int = Field(default=100, ge=2)
    top_t: float = Field(default=50.0, ge=0, le=100, description="unsupervised: percentile")
    chunk_size: int = Field(default=4096, ge=1, description="samples searched together")


@dataclass
class SearchSettings:
    """The knobs of :func:`boundary_distances` (see :class:`BoundaryParams`)."""

    max_queries: int = 300
    init_eval: int = 20
    max_eval: int = 100
    init_tries: int = 20
    binary_steps: int | None = None
    step_halvings: int = 8
    delta: float = 0.01
    chunk_size: int = 4096

    @classmethod
    def of(cls, params: BoundaryParams) -> SearchSettings:
        keys = cls.__dataclass_fields__
        return cls(**{k: v for k, v in params.model_dump().items() if k in keys})


def _bisection_steps(s: SearchSettings, d: int) -> int:
    """HopSkipJump's bisection precision: ``theta = 0.01 / sqrt(d)`` of the segment."""
    if s.binary_steps is not None:
        return s.binary_steps
    return max(1, math.ceil(math.log2(math.sqrt(d) / 0.01)))


def _probes(t: int, s: SearchSettings) -> int:
    return int(min(s.init_eval * math.sqrt(t + 1), s.max_eval))


def boundary_distances(
    labels_of,
    x: np.ndarray,
    y: np.ndarray,
    settings: SearchSettings,
    seed: int,
    box: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Estimated L2 distance of every sample to the decision boundary, and the label
    queries each used.

    ``labels_of(batch)`` returns predicted labels for a batch shaped like ``x``; ``y``
    are the labels whose region the search leaves (a misclassified sample gets 0).
    """
    n = len(x)
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(n, -1)
    d = flat.shape[1]
    dist = np.zeros(n)
    used = np.zeros(n, dtype=np.int64)
    per_sample = max(settings.init_eval, settings.max_eval) * d  # probe elements at most
    chunk = max(1, min(settings.chunk_size, _MAX_PROBE_ELEMENTS // per_sample))
    gen = torch.Generator().manual_seed(int_seed(seed, "boundary") % (2**63))
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        dist[part], used[part] = _search_chunk(
            labels_of, flat[part], np.asarray(y)[part], x.shape[1:], settings, gen, box
        )
    return dist, used


class _LabelQueries:
    """Label queries of one chunk of samples, counted per sample in ``used``."""

    def __init__(self, labels_of, y: np.ndarray, shape: tuple[int, ...]) -> None:
        self.labels_of, self.y, self.shape = labels_of, y, shape
        self.used = np.zeros(len(y), dtype=np.int64)

    def __call__(self, points: torch.Tensor, rows: np.ndarray) -> np.ndarray:
        """True where the label at ``points`` (one per row of ``rows``) differs from y."""
        np.add.at(self.used, rows, 1)
        pred = self.labels_of(points.numpy().reshape(len(points), *self.shape))
        return np.asarray(pred) != self.y[rows]


def _search_chunk(labels_of, x, y, shape, s: SearchSettings, gen, box):
    lo, hi = box
    n, d = x.shape
    steps = _bisection_steps(s, d)
    xt = torch.from_numpy(x)
    query = _LabelQueries(labels_of, y, shape)
    used = query.used
    # The sample itself: misclassified samples are at distance 0 and need no search.
    misclassified = query(xt, np.arange(n))
    dist = np.where(misclassified, 0.0, (hi - lo) * math.sqrt(d))  # else the box diameter
    start, found = _starting_points(query, xt, np.flatnonzero(~misclassified), s, steps, gen, box)
    rows = np.flatnonzero(found)
    if rows.size == 0:
        return dist, used
    # Project onto the boundary: bisection on the segment from the sample.
    cur = _bisect(query, xt[rows], start[rows], rows, steps)
    best = torch.linalg.vector_norm(cur - xt[rows], dim=1).double()
    t = 0
    while rows.size:
        # what each sample can afford: probes, then one step try and a bisection
        n_probe = np.minimum(_probes(t, s), s.max_queries - used[rows] - 1 - steps)
        keep = n_probe >= 2
        if not keep.any():
            break
        if not keep.all():
            dist[rows[~keep]] = best[torch.from_numpy(~keep)].numpy()
            kept = torch.from_numpy(keep)
            rows, cur, best, n_probe = rows[keep], cur[keep], best[kept], n_probe[keep]
        origin = xt[rows]
        gap = torch.linalg.vector_norm(cur - origin, dim=1)
        grad = _estimate_normal(query, cur, gap, rows, n_probe, t, s, gen, box)
        moved = _step_search(query, cur, grad, gap / math.sqrt(t + 1), rows, s, steps, box)
        # (i) back onto the boundary, towards the sample
        cur = _bisect(query, origin, moved, rows, steps)
        best = torch.minimum(best, torch.linalg.vector_norm(cur - origin, dim=1).double())
        t += 1
    dist[rows] = best.numpy()
    return dist, used


def _starting_points(query, xt, todo, s: SearchSettings, steps: int, gen, box):
    """A point on the other side of the boundary for each sample of ``todo``: uniform
    noise in the box, tried only while the budget still affords the draw and the
    bisection that follows it. Returns the points and where one was found."""
    lo, hi = box
    start = torch.zeros_like(xt)
    found = np.zeros(len(xt), bool)
    for _ in range(s.init_tries):
        rows = todo[~found[todo] & (query.used[todo] + 1 + steps <= s.max_queries)]
        if rows.size == 0:
            break
        noise = torch.rand((rows.size, xt.shape[1]), generator=gen) * (hi - lo) + lo
        ok = query(noise, rows)
        start[rows[ok]] = noise[ok]
        found[rows[ok]] = True
    return start, found


def _estimate_normal(query, cur, gap, rows, n_probe, t: int, s: SearchSettings, gen, box):
    """(ii) The boundary's unit normal at ``cur`` from the labels of ``n_probe`` random
    probes per sample (HopSkipJump's baseline-corrected Monte-Carlo estimate)."""
    lo, hi = box
    width = int(n_probe.max())
    mask = torch.from_numpy(np.arange(width)[None, :] < n_probe[:, None])
    radius = (s.delta * gap).clamp_min(1e-6)[:, None, None]
    if t == 0:  # HopSkipJump's first probes: a tenth of the data range
        radius = torch.full_like(radius, 0.1 * (hi - lo))
    u = torch.randn((rows.size, width, cur.shape[1]), generator=gen)
    u = u / torch.linalg.vector_norm(u, dim=2, keepdim=True)
    pts = (cur[:, None, :] + radius * u).clamp(lo, hi)
    u = (pts - cur[:, None, :]) / radius
    flipped = query(pts[mask], np.repeat(rows, n_probe))
    phi = torch.zeros((rows.size, width))
    phi[mask] = torch.from_numpy(np.where(flipped, 1.0, -1.0).astype(np.float32))
    count = torch.from_numpy(n_probe.astype(np.float32))[:, None]
    mean = phi.sum(dim=1, keepdim=True) / count
    weights = torch.where(mean.abs() == 1.0, mean, phi - mean) * mask
    grad = torch.einsum("bp,bpd->bd", weights, u) / count
    return grad / torch.linalg.vector_norm(grad, dim=1, keepdim=True).clamp_min(1e-12)


def _step_search(query, cur, grad, eps, rows, s: SearchSettings, steps: int, box):
    """(iii) Geometric step-size search along ``grad`` from ``cur``: a step of ``eps``,
    halved until it stays misclassified (while the budget affords it and a bisection)."""
    lo, hi = box
    eps = eps[:, None]
    moved = cur.clone()
    pending = np.ones(rows.size, bool)
    for _ in range(s.step_halvings):
        idx = np.flatnonzero(pending & (query.used[rows] + 1 + steps <= s.max_queries))
        if idx.size == 0:
            break
        cand = (cur[idx] + eps[idx] * grad[idx]).clamp(lo, hi)
        ok = query(cand, rows[idx])
        moved[idx[ok]] = cand[ok]
        pending[idx[ok]] = False
        eps[idx[~ok]] /= 2.0
    return moved


def _bisect(query, origin: torch.Tensor, adv: torch.Tensor, rows: np.ndarray, steps: int):
    """Boundary point on the segment origin -> adv (adv misclassified): ``steps``
    bisections, returning the misclassified end."""
    low = torch.zeros(len(rows), 1)
    high = torch.ones(len(rows), 1)
    for _ in range(steps):
        mid = (low + high) / 2
        flipped = torch.from_numpy(query((1 - mid) * origin + mid * adv, rows))[:, None]
        high = torch.where(flipped, mid, high)
        low = torch.where(flipped, low, mid)
    return (1 - high) * origin + high * adv


class BoundaryAttack(QueryAttack):
    """Decision-boundary distance with a batched HopSkipJump search (module docstring).

    ``calibration: supervised`` fits the threshold in :meth:`fit` on a reference model.
    ``unsupervised`` has a per-target step (:meth:`prepare`): the search on
    ``calibration_samples`` random inputs labelled by the target (one label query each,
    then the search's queries), whose ``top_t``-th percentile distance is the threshold.
    :meth:`score` runs the search on the candidates (at most ``max_queries`` label
    queries per sample).
    """

    name = "boundary"
    summary = (
        "boundary distance: L2 distance to the decision boundary from a batched "
        "HopSkipJump label-only search under a query budget (label-only)"
    )
    paper = (
        "Choquette-Choo et al. 2021, Label-Only Membership Inference Attacks (ICML); Li & Zhang "
        "2021, Membership Leakage in Label-Only Exposures (CCS); HopSkipJump: Chen et al. 2020"
    )
    threat_model = "label"
    needs = Needs("queries", target_step=True)
    Params = BoundaryParams

    @classmethod
    def needs_for(cls, params: BoundaryParams) -> Needs:
        """A reference model for ``supervised`` calibration, a per-target step for
        ``unsupervised``."""
        return replace(
            cls.needs,
            references="offline" if params.calibration == "supervised" else "none",
            target_step=params.calibration == "unsupervised",
        )

    @single_threaded
    def _fit(self, refs: QueryReferences | None) -> None:
        self.threshold_ = 0.0
        self.calibration_accuracy_ = None
        if self.params.calibration != "supervised":
            return
        assert refs is not None
        data = refs.data
        # the adversary's own model, asked for labels like the target (through its
        # defence, if any: a label-preserving one answers with the model's label)
        ref = refs.models[0]
        member = np.asarray(refs.member[0], bool)
        pick = rng(data.seed, "boundary-calibration")
        half = self.params.calibration_samples // 2
        ins = pick.choice(np.flatnonzero(member), min(half, member.sum()), replace=False)
        outs = pick.choice(np.flatnonzero(~member), min(half, (~member).sum()), replace=False)
        rows = np.concatenate([ins, outs])
        dist, _ = boundary_distances(
            ref.labels,
            data.x[rows],
            data.labels[rows],
            SearchSettings.of(self.params),
            int_seed(data.seed, "boundary-supervised"),
            data_box(data.x),
        )
        is_in = member[rows]
        self.threshold_ = best_threshold(dist[is_in], dist[~is_in])
        self.calibration_accuracy_ = float(
            ((dist[is_in] >= self.threshold_).mean() + (dist[~is_in] < self.threshold_).mean()) / 2
        )

    @single_threaded
    def _prepare(self, target: Target, data: QueryData) -> None:
        box = data_box(data.x)
        g = rng(data.seed, "boundary-unsupervised")
        shape = (self.params.calibration_samples, *data.x.shape[1:])
        noise = (g.random(shape) * (box[1] - box[0]) + box[0]).astype(np.float32)
        own = target.labels(noise)
        settings = SearchSettings.of(self.params)
        seed = int_seed(data.seed, "boundary-random")
        dist, _ = boundary_distances(target.labels, noise, own, settings, seed, box)
        self.threshold_ = float(np.percentile(dist, self.params.top_t))

    @single_threaded
    def _score(self, target: Target, data: QueryData) -> np.ndarray:
        settings = SearchSettings.of(self.params)
        dist, _ = boundary_distances(
            target.labels, data.x, data.labels, settings, data.seed, data_box(data.x)
        )
        return dist - self.threshold_

    def extra(self) -> dict:
        return {
            "threshold": float(self.threshold_),
            "calibration": self.params.calibration,
            "calibration_balanced_accuracy": self.calibration_accuracy_,
        }
