from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser

import numpy as np
import pytest

from mialens.audit.results import AuditResult
from mialens.report import figure_data, plots
from mialens.report.audit_page import render_report

EVIL = "<script>alert(1)</script>"
LEVELS = [0.1, 0.01, 0.001]
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _result(
    n_targets: int = 4,
    n_samples: int = 300,
    n_boot: int = 20,
    strengths: tuple[float, ...] = (0.2, 1.0, 2.0),
    dp: bool = False,
) -> AuditResult:
    """A hand-built audit: shuffled string ids, half members per target, leaky scores.

    The last attack's scores are heavy-tailed (Student t with 1.5 degrees of freedom).
    """
    gen = np.random.default_rng(0)
    ids = np.array([f"id-{v}" for v in gen.permutation(np.arange(7, 7 + 3 * n_samples, 3))])
    half = np.arange(n_samples) < n_samples // 2
    members = np.stack([gen.permutation(half) for _ in range(n_targets)])
    names = [f"attack_{i}" for i in range(len(strengths))]
    scores = {
        name: gen.normal(size=members.shape) + s * members
        for name, s in zip(names, strengths, strict=True)
    }
    scores[names[-1]] = gen.standard_t(1.5, size=members.shape) + strengths[-1] * members
    attacks = {
        name: {
            "summary": f"synthetic attack {name}",
            "paper": "Nobody et al. 2024, A Paper (Venue), Sec. 1",
            "threat_model": "score",
            "references": "none",
            "uses_population": False,
            "params": {"note": EVIL, "k": 3} if i == 0 else {},
            "queries_per_sample": 1,
        }
        for i, name in enumerate(names)
    }
    result = AuditResult(
        sample_ids=ids,
        labels=gen.integers(0, 10, size=n_samples),
        members=members,
        target_models=list(range(n_targets)),
        scores=scores,
        attacks=attacks,
        fpr_levels=LEVELS,
        design={
            "dataset": EVIL,
            "num_models": n_targets,
            "pool_size": n_samples,
            "test_size": 100,
            "population_size": 100,
            "queries_per_sample": 1,
            "seed": 0,
        },
        training=[
            {
                "model": k,
                "key": f"{k:032x}",
                "cached": k % 2 == 0,
                "epochs_run": 10,
                "best_epoch": None,
                "epsilon": 2.5 + k if dp else None,
                "seconds": 0.5,
            }
            for k in range(n_targets)
        ],
        config={"dataset": {"name": EVIL}, "train": {"dp": {"delta": 1e-5} if dp else None}},
    )
    result.compute_metrics(n_boot=n_boot, seed=0)
    train = [1.0 - 0.01 * k for k in range(n_targets)]
    result.set_utility(train, [t - 0.1 for t in train], test_source="held-out test set")
    return result


class _Collector(HTMLParser):
    """Records start tags and checks that every non-void element is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Collector:
    parser = _Collector()
    parser.feed(html)
    parser.close()
    assert parser.stack == [], f"unclosed elements: {parser.stack}"
    return parser


def _images(parser: _Collector) -> list[bytes]:
    srcs = [attrs["src"] or "" for tag, attrs in parser.tags if tag == "img"]
    prefix = "data:image/png;base64,"
    assert all(src.startswith(prefix) for src in srcs)
    return [base64.b64decode(src[len(prefix) :], validate=True) for src in srcs]


def test_report_contents():
    result = _result()
    html = render_report(result)
    parser = _parse(html)
    text = " ".join(parser.text)

    for name in result.scores:
        assert name in text
    for label in ("TPR @ 10% FPR", "TPR @ 1% FPR", "TPR @ 0.1% FPR"):
        assert label in text
    # 150 non-members per target resolve FPR 1% but not 0.1%: one flagged cell per attack.
    classes = [(attrs.get("class") or "").split() for tag, attrs in parser.tags if tag == "td"]
    assert sum("unresolved" in c for c in classes) == len(result.scores)
    assert "fewer than 1/FPR non-members: this is the TPR at FPR 0" in text
    assert "boot" in text and "20 replicates" in text

    images = _images(parser)
    assert len(images) == 3
    assert all(png.startswith(PNG_MAGIC) for png in images)
    lowered = html.lower()
    assert 'src="http' not in lowered and "<link" not in lowered and "<script" not in lowered
    assert "url(" not in lowered and "@import" not in lowered

    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert EVIL in text  # shown to the reader as text


def test_report_numbers_match_metrics():
    result = _result()
    text = " ".join(_parse(render_report(result)).text)
    auc = result.metrics["attack_1"].auc
    assert f"{auc.mean:.3f} ± {auc.std:.3f}" in text
    assert f"[{auc.ci_low:.3f}, {auc.ci_high:.3f}]" in text
    assert f"[{auc.bootstrap.low:.3f}, {auc.bootstrap.high:.3f}]" in text
    assert "0.990 ± " in text or "0.985 ± " in text  # mean train accuracy of the 4 targets


def test_intervals_widened_at_few_allowed_false_positives_are_marked():
    # 150 non-members per target: 10% FPR allows 15 false positives, 1% one, 0.1% none
    parser = _parse(render_report(_result()))
    text = " ".join(" ".join(parser.text).split())
    marks = [a for tag, a in parser.tags if tag == "a" and a.get("href") == "#few-false-positives"]
    assert len(marks) == 2 * 3  # the bootstrap intervals at 1% and 0.1% of the three attacks
    assert "Widened bootstrap interval at 0.1% (0 allowed), 1% (1 allowed) FPR" in text
    assert "may accept fewer than 10 non-members (false positives)" in text


def test_report_without_bootstrap():
    result = _result(n_boot=0)
    assert result.metrics["attack_0"].auc.bootstrap is None
    parser = _parse(render_report(result))
    text = " ".join(parser.text)
    assert "boot [" not in text and "replicates" not in text
    assert "few-false-positives" not in render_report(result)  # no interval, nothing widened
    assert len(_images(parser)) == 3


def test_report_single_target_with_dp():
    result = _result(n_targets=1, n_boot=0, dp=True)
    parser = _parse(render_report(result))
    text = " ".join(parser.text)
    auc = result.metrics["attack_1"].auc.mean
    assert f"{auc:.3f}" in text and f"{auc:.3f} ±" not in text  # no spread with one target
    assert "n/a (one target)" in text and "t [" not in text
    assert "DP ε" in text and "δ = 1e-05" in text
    assert len(_images(parser)) == 3


def test_spread_falls_back_to_lowest_resolved_fpr():
    result = _result(n_samples=80)  # 40 non-members: 1% FPR is not resolvable
    assert figure_data.spread_level(result) == pytest.approx(1 / 40)
    text = " ".join(_parse(render_report(result)).text)
    assert "TPR at 2.5% FPR" in text and "n/a" in text


def test_report_size_with_ten_attacks():
    result = _result(strengths=tuple(np.linspace(0.0, 2.0, 10)))
    html = render_report(result)
    assert len(html.encode()) < 1_000_000
    assert len(_images(_parse(html))) == 3


def test_figures_are_thread_safe_and_deterministic():
    result = _result()
    figures = figure_data.audit_figures(result)
    parts = figures.roc, figures.histograms, figures.spread
    draw = plots.roc_png, plots.histogram_png, plots.spread_png
    expected = [fn(part) for fn, part in zip(draw, parts, strict=True)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(fn, part) for _ in range(2) for fn, part in zip(draw, parts, strict=True)
        ]
        got = [f.result() for f in futures]
    assert got == expected * 2
