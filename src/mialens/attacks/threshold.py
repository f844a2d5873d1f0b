"""Metric-threshold attacks: LOSS and Song & Mittal's class-dependent thresholds.

These read the unmodified query only (query index 0).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mialens.attacks.base import Needs, ReferenceSignals, SignalAttack, TargetSignals
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
