"""The audit report says in words which FPR levels ties make unreachable, and why."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np

from mialens.audit.results import AuditResult
from mialens.metrics.leakage import AttackLeakage
from mialens.report.audit_page import render_report
from mialens.report.figure_data import reachable
from mialens.workflows.outputs import load_result, write_outputs

LEVELS = [0.1, 0.01]


def _result(n_targets: int = 3, n_samples: int = 400) -> AuditResult:
    """Shuffled non-contiguous string ids, half members; ``smooth`` has continuous scores,
    ``discrete`` puts 70% of members and 15% of non-members at the top score 1."""
    gen = np.random.default_rng(1)
    ids = np.array([f"s{v}" for v in gen.permutation(np.arange(11, 11 + 5 * n_samples, 5))])
    half = np.arange(n_samples) < n_samples // 2
    members = np.stack([gen.permutation(half) for _ in range(n_targets)])
    smooth = gen.normal(size=members.shape) + members
    top = gen.random(members.shape) < np.where(members, 0.7, 0.15)
    discrete = np.where(top, 1.0, gen.uniform(0, 0.9, members.shape))
    names = ["smooth", "discrete"]
    result = AuditResult(
        sample_ids=ids,
        labels=gen.integers(0, 3, size=n_samples),
        members=members,
        target_models=[4, 9, 2][:n_targets],
        scores={"smooth": smooth, "discrete": discrete},
        attacks={n: {"summary": n, "paper": "", "threat_model": "score"} for n in names},
        fpr_levels=LEVELS,
        config={},
    )
    result.compute_metrics(n_boot=10, seed=0)
    return result


def _text(html: str) -> str:
    parser = HTMLParser()
    chunks: list[str] = []
    parser.handle_data = chunks.append  # type: ignore[method-assign]
    parser.feed(html.split("</style>", 1)[1])  # the text the reader sees, not the CSS
    return re.sub(r"\s+", " ", " ".join(chunks))


def test_unreachable_levels_are_explained():
    result = _result()
    discrete = result.metrics["discrete"]
    assert discrete.at(0.1).reachable is False
    assert discrete.at(0.1).unreachable_targets == 3
    assert discrete.at(0.1).mean == 0.0
    assert result.metrics["smooth"].at(0.1).reachable is True
    html = render_report(result)
    text = _text(html)
    share = max(discrete.at(0.1).ties.group_share)
    assert f"unreachable: {100 * share:.0f}% of scores tie" in text
    assert html.count('class="num unreachable"') == 2  # both levels of discrete only
    assert "Unreachable FPR level" in text and "vertical rise" in text
    assert "discrete at 10%, 1% FPR (3 of 3 targets): a tie group holding" in text
    assert "moves the FPR from 0% to" in text
    tie = discrete.tie_share.max
    assert f"discrete ties: {100 * tie:.0f}% of scores at one value" in text
    assert "smooth ties" not in text
    assert "leave some FPR levels unreachable for discrete:" in text


def test_partly_unreachable_and_old_metrics():
    result = _result()
    result.metrics["discrete"].at(0.01).ties.reachable[1] = True
    text = _text(render_report(result))
    assert "unreachable on 2 of 3 targets:" in text
    for name, m in result.metrics.items():  # a metrics.json written before the tie guard
        doc = m.to_json()
        doc.pop("tie_share")
        for e in doc["tpr_at_fpr"].values():
            for key in ("reachable", "unreachable_targets", "ties"):
                e.pop(key)
        result.metrics[name] = AttackLeakage.from_json(doc)
    text = _text(render_report(result))
    for words in ("Unreachable FPR level", "of scores tie", "of scores at one value"):
        assert words not in text


def test_roc_legend_marks_unreachable_one_percent():
    result = _result()
    assert not reachable(result.scores["discrete"], result.members, 0.01)
    assert reachable(result.scores["smooth"], result.members, 0.01)


def test_tie_guard_survives_reloading_a_run(tmp_path):
    result = _result()
    write_outputs(result, tmp_path)
    loaded = load_result(tmp_path)
    assert loaded.metrics["discrete"].tie_share == result.metrics["discrete"].tie_share
    assert "tie_share" not in loaded.attacks["discrete"]
    assert loaded.metrics["discrete"].at(0.1).reachable is False
