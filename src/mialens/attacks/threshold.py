"""Metric-threshold attacks: LOSS and Song & Mittal's class-dependent thresholds.

These read the unmodified query only (query index 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mialens.attacks.base import (
    ModelSignals,
    Needs,
    ReferenceSignals,
    SignalAttack,
    TargetSignals,
)
from mialens.errors import DataError
from mialens.signals.statistics import SignalSpec


class LossAttack(SignalAttack):
    """LOSS attack (Yeom et al. 2018, Sec. 3.2).

    A sample is called a member when its loss is below a threshold, so the score is the
    negated cross-entropy ``-l(f(x), y)``; the ROC sweeps the threshold.
    """

    name = "loss"
    summary = "LOSS: lower cross-entropy on the target means member (no reference models)"
    paper = "Yeom et al. 2018, Privacy Risk in Machine Learning (CSF), Sec. 3.2"
    needs = Needs("signals", chunking="samples")

    def signal(self) -> SignalSpec:
        return SignalSpec("loss")

    def _score(self, target: TargetSignals) -> np.ndarray:
        return -target.values[:, 0]


def best_threshold(member_values: np.ndarray, nonmember_values: np.ndarray) -> float:
    """Threshold ``t`` maximising ``(P[m >= t | member] + P[m < t | non-member]) / 2``.

    Song & Mittal 2021, Sec. 3.2: the threshold of each class is chosen on shadow (here:
    reference) models to maximise the balanced attack accuracy; candidates are the
    observed values and the smallest maximiser is returned.
    """
    ins = np.sort(member_values)
    outs = np.sort(nonmember_values)
    cand = np.unique(np.concatenate([ins, outs]))
    # Compare TPR + TNR exactly, in integers: (members >= t) * n_out + (non-members < t) * n_in.
    hits = (ins.size - np.searchsorted(ins, cand, side="left")) * outs.size
    rejections = np.searchsorted(outs, cand, side="left") * ins.size
    return float(cand[np.argmax(hits + rejections)])


@dataclass(frozen=True)
class PooledValues:
    """Every model's values sorted within segments (one per class, or a single one),
    grouped by equal value, for :func:`best_threshold` fitted without any one model.

    ``values``: each group's value; ``segment``: each group's segment (ascending) and
    ``index`` its position among the segments present, which start at the groups
    ``starts``; ``counts``: the members and the non-members of all models in each group;
    ``own[m]``: the groups of model ``m``'s members and of its non-members.
    """

    values: np.ndarray
    segment: np.ndarray
    index: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    own: list[tuple[np.ndarray, np.ndarray]]

    @classmethod
    def of(cls, values: np.ndarray, member: np.ndarray, segment: np.ndarray) -> PooledValues:
        """The pooled ``(M, N)`` values and membership, in segments ``(N,)`` (ints)."""
        segments = np.broadcast_to(segment, values.shape).ravel()
        order = np.lexsort((values.ravel(), segments))
        ranked, segments = values.ravel()[order], segments[order]
        new = np.r_[True, (ranked[1:] != ranked[:-1]) | (segments[1:] != segments[:-1])]
        group = np.cumsum(new) - 1
        firsts = np.flatnonzero(new)
        group_segment = segments[firsts]
        index = np.cumsum(np.r_[False, group_segment[1:] != group_segment[:-1]])
        in_group = member.ravel()[order]
        counts = np.stack(
            [np.bincount(group[m], minlength=firsts.size) for m in (in_group, ~in_group)]
        )
        unsorted = np.empty_like(group)
        unsorted[order] = group  # each value's group, in the models' (M, N) order
        groups = unsorted.reshape(values.shape)
        own = [(g[m], g[~m]) for g, m in zip(groups, member, strict=True)]
        starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
        return cls(ranked[firsts], group_segment, index, starts, counts, own)

    def thresholds_without(self, dropped: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per segment present: its id, :func:`best_threshold` of the values of every
        model but ``dropped``, and whether those hold a member and a non-member.

        The same integers as :func:`best_threshold` on the remaining values: for each
        candidate (a group holding a remaining value), the members at or above it times
        the non-members, plus the non-members below it times the members; the smallest
        maximiser of each segment is chosen."""
        n_groups, seg, starts = self.values.size, self.index, self.starts
        ins, outs = (
            total - np.bincount(own, minlength=n_groups)
            for total, own in zip(self.counts, self.own[dropped], strict=True)
        )
        n_in, n_out = np.add.reduceat(ins, starts), np.add.reduceat(outs, starts)
        gain = (n_in[seg] - _below(ins, starts, seg)) * n_out[seg]
        gain += _below(outs, starts, seg) * n_in[seg]
        gain[ins + outs == 0] = -1  # no remaining value: not a candidate
        best = np.flatnonzero(gain == np.maximum.reduceat(gain, starts)[seg])
        first = best[np.r_[True, seg[best][1:] != seg[best][:-1]]]  # smallest per segment
        return self.segment[starts], self.values[first], (n_in > 0) & (n_out > 0)


def _pools(sign: float, models: ModelSignals) -> tuple[PooledValues, PooledValues] | None:
    """The signed values of every model pooled over all classes, and per class (None
    when they hold both zeros, -0.0 and 0.0)."""
    values = sign * models.values[:, :, 0]
    zeros = np.signbit(values[values == 0])
    if zeros.any() and not zeros.all():
        return None
    overall = np.zeros(values.shape[1], dtype=np.int64)
    return (
        PooledValues.of(values, models.member, overall),
        PooledValues.of(values, models.member, np.asarray(models.labels)),
    )


def _below(counts: np.ndarray, starts: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Per group, the counts of the groups before it in its segment."""
    before = np.cumsum(counts) - counts
    return before - before[starts][seg]


class ClassThresholdAttack(SignalAttack):
    """Song & Mittal 2021 metric attack with class-dependent thresholds.

    The metric ``m`` (oriented so that larger means member) is compared with a
    threshold ``tau_y`` per class, calibrated on reference models' members and
    non-members of that class (:func:`best_threshold`). The score ``m(x) - tau_y``
    reproduces the paper's decision at 0 and extends it to a full ROC. Classes without
    reference members or non-members fall back to one threshold over all classes.
    """

    needs = Needs("signals", references="offline")
    paper = (
        "Song & Mittal 2021, Systematic Evaluation of Privacy Risks of Machine Learning "
        "Models (USENIX Security), Sec. 3.2"
    )
    metric: ClassVar[str]
    sign: ClassVar[float] = 1.0

    def signal(self) -> SignalSpec:
        return SignalSpec(self.metric)

    def _fit(self, refs: ReferenceSignals | None) -> None:
        assert refs is not None
        values = self.sign * refs.values[:, :, 0]
        labels = np.broadcast_to(refs.labels, values.shape)
        member = refs.member
        fallback = best_threshold(values[member], values[~member])
        num_classes = int(refs.labels.max()) + 1
        self.thresholds_ = np.full(num_classes, fallback)
        by_class = np.argsort(labels, axis=None, kind="stable")  # row-major within a class
        bounds = np.searchsorted(labels.ravel()[by_class], np.arange(num_classes + 1))
        values, member = values.ravel()[by_class], member.ravel()[by_class]
        for c in range(num_classes):
            of_c = slice(bounds[c], bounds[c + 1])
            ins, outs = values[of_c][member[of_c]], values[of_c][~member[of_c]]
            if ins.size and outs.size:
                self.thresholds_[c] = best_threshold(ins, outs)

    def _fit_leaving_out(self, models: ModelSignals, target: int) -> None:
        """:meth:`_fit` on every model but ``target``, exactly: the thresholds are read
        from the values of all models, pooled once per class and once over all classes
        (:class:`PooledValues`) and shared by every target, instead of sorted anew."""
        pools = models.shared(("class_thresholds", self.sign), lambda: _pools(self.sign, models))
        if pools is None:  # -0.0 and 0.0: which one best_threshold returns depends on a sort
            self._fit(models.references(target))
            return
        overall, by_class = pools
        _, (fallback,), _ = overall.thresholds_without(target)
        self.thresholds_ = np.full(int(models.labels.max()) + 1, fallback)
        classes, thresholds, valid = by_class.thresholds_without(target)
        self.thresholds_[classes[valid]] = thresholds[valid]

    def _score(self, target: TargetSignals) -> np.ndarray:
        labels = np.asarray(target.labels)
        if labels.max() >= self.thresholds_.size:
            raise DataError(
                f"attack {self.name!r}: target label {labels.max()} was never seen in the "
                "reference signals; fit and score must use the same samples"
            )
        return self.sign * target.values[:, 0] - self.thresholds_[labels]


class ConfidenceAttack(ClassThresholdAttack):
    """Song & Mittal's I_conf: confidence in the true class, class thresholds."""

    name = "confidence"
    summary = "confidence in the true class vs. class thresholds calibrated on reference models"
    metric = "confidence"


class EntropyAttack(ClassThresholdAttack):
    """Song & Mittal's I_entr: negated prediction entropy, class thresholds."""

    name = "entropy"
    summary = "prediction entropy (low means member) vs. class thresholds from reference models"
    metric = "entropy"
    sign = -1.0


class ModifiedEntropyAttack(ClassThresholdAttack):
    """Song & Mittal's I_Mentr: negated modified entropy (Eq. 3), class thresholds."""

    name = "mentr"
    summary = "modified entropy (Song & Mittal, Eq. 3; low means member) vs. class thresholds"
    metric = "modified_entropy"
    sign = -1.0
