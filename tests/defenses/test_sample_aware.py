"""Sample-aware defences: which training samples get flagged, and what happens to them."""

import numpy as np

from mialens.defenses.config import SampleAwareConfig
from mialens.defenses.sample_aware import flag_samples, training_adjustment


def blobs():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (40, 2)), rng.normal(5, 0.1, (40, 2))])
    y = np.repeat([0, 1], 40)
    x[7] = [2.5, 2.5]  # far from class 0's centre
    x[60] = [-3.0, 8.0]  # far from class 1's centre
    order = np.random.default_rng(1).permutation(80)  # shuffled, non-contiguous
    return x[order], y[order], np.argsort(order)


def test_detectors_flag_the_planted_outliers_in_each_class():
    x, y, where = blobs()
    for detector in ("knn", "lof", "isolation_forest", "centroid"):
        flags = flag_samples(
            x, y, SampleAwareConfig(action="remove", detector=detector, fraction=0.05), 0
        )
        assert flags.sum() == 4  # 5% of each class of 40
        assert flags[where[7]] and flags[where[60]], detector
        assert flags[y == 0].sum() == flags[y == 1].sum() == 2


def test_uniform_counterpart_flags_as_many_random_samples():
    x, y, _ = blobs()
    config = SampleAwareConfig(action="remove", fraction=0.1, counterpart=True)
    a, b = flag_samples(x, y, config, 0), flag_samples(x, y, config, 0)
    assert a.sum() == 8 and np.array_equal(a, b)
    assert not np.array_equal(a, flag_samples(x, y, config, 1))


def test_actions():
    x, y, where = blobs()
    keep, weight, smooth, clip = training_adjustment(x, y, SampleAwareConfig(action="remove"), 0)
    assert not keep[where[7]] and keep.sum() == 76
    assert weight is None and smooth is None and clip is None
    keep, weight, smooth, clip = training_adjustment(
        x, y, SampleAwareConfig(action="downweight", weight=0.25), 0
    )
    assert keep.all() and weight[where[7]] == 0.25 and (weight == 1).sum() == 76
    keep, weight, smooth, clip = training_adjustment(
        x, y, SampleAwareConfig(action="smooth", smoothing=0.4), 0
    )
    assert smooth[where[60]] == 0.4 and (smooth == 0).sum() == 76 and weight is None
    keep, weight, smooth, clip = training_adjustment(
        x, y, SampleAwareConfig(action="clip", clip_norm=0.3), 0
    )
    assert keep.all() and weight is None and smooth is None
    assert clip[where[7]] == 0.3 and np.isinf(clip).sum() == 76
