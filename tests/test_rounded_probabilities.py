"""Targets answering rounded probabilities (as prediction APIs do) are audited as such."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import mialens
from mialens.splits import keep_mask

ATTACKS = ["lira_online", "lira_offline", "rmia_online", "rmia_offline"]


def _answers(model, decimals):
    if decimals is None:
        return model.predict_proba
    return lambda v: np.round(model.predict_proba(v), decimals)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))  # shuffled, non-contiguous samples
    pool, pop = order[:600], order[600:1000]
    return x[pool], y[pool], rng.random(600) < 0.5, (x[pop], y[pop])


def _audit(digits, decimals):
    x, y, members, pop = digits

    def fit(xs, ys):
        return LogisticRegression(C=10, max_iter=500).fit(xs, ys)

    return mialens.audit_model(
        _answers(fit(x[members], y[members]), decimals), x, y, members, population=pop,
        train_reference=lambda xs, ys, seed: _answers(fit(xs, ys), decimals),
        num_references=4, bootstrap=0, attacks=ATTACKS,
    )  # fmt: skip


def test_rounded_probabilities_audit_like_exact_ones(digits):
    exact, rounded = _audit(digits, None), _audit(digits, 2)
    for name in ATTACKS:
        auc_exact = exact.metrics[name].auc.mean
        auc_rounded = rounded.metrics[name].auc.mean
        assert abs(auc_rounded - auc_exact) < 0.03, (name, auc_exact, auc_rounded)


def test_audit_logits_reads_rounded_probabilities(digits):
    x, y, members, _ = digits
    n, r = len(y), 4
    ref_members = keep_mask(r, n, seed=3)

    def proba(mask):
        return LogisticRegression(C=10, max_iter=500).fit(x[mask], y[mask]).predict_proba(x)

    target = proba(members)
    refs = np.stack([proba(m) for m in ref_members])
    kw = dict(bootstrap=0, attacks=["lira_online", "lira_offline"])
    exact = mialens.audit_logits(target, y, members, refs, ref_members, **kw)
    rounded = mialens.audit_logits(
        np.round(target, 2), y, members, np.round(refs, 2), ref_members, **kw
    )
    declared = mialens.audit_logits(
        np.round(target, 2), y, members, np.round(refs, 2), ref_members,
        output="probabilities", **kw,
    )  # fmt: skip
    for name in kw["attacks"]:
        auc = exact.metrics[name].auc.mean
        assert abs(rounded.metrics[name].auc.mean - auc) < 0.03
        np.testing.assert_array_equal(rounded.scores[name], declared.scores[name])
