"""The defences page from a hand-built evaluation: the shared template environment and style."""

from __future__ import annotations

from mialens.defenses.dp_audit import NOT_DP, with_bounds, without_bound
from mialens.report.defenses_page import render_defenses

LEVELS = ("0.1", "0.01")


def _tpr(value: float, attack: str, resolved: bool = True) -> dict:
    return {"value": value, "attack": attack, "ci_low": 0.0, "ci_high": 1.0, "resolved": resolved}


def _entry(kind: str, acc: float, tprs: tuple[float, float], **extra) -> dict:
    return {
        "kind": kind,
        "report": f"defenses/{kind}/report.html",
        "test_acc": acc,
        "train_acc": acc + 0.1,
        "auc": {"value": 0.6, "attack": "loss"},
        "tpr_at_fpr": {
            lv: _tpr(t, "loss", resolved=lv == "0.1") for lv, t in zip(LEVELS, tprs, strict=True)
        },
        "epsilon": None,
        "dp_audit": without_bound(False),
        "training_overhead": 1.0,
        "models_reused": 0,
        "inference_seconds_per_answer": 0.0,
        "comparable": True,
        "missing_attacks": [],
        "undefended_same_attacks": None,
        **extra,
    }


def _dp_doc() -> dict:
    bound = {"method": "one_run_steinke2023", "kind": "bound", "epsilon_lower": 0.734,
             "ratio": 0.2, "ceiling": 5.0, "beta": 0.05}  # fmt: skip
    estimate = {"method": "gaussian_dp_nasr2023", "kind": "estimate", "epsilon_estimate": 9.0}
    return {
        "accountant_epsilon": 3.67,
        "delta": 1e-5,
        "canaries": {"m": 100, "kind": "dirac"},
        "methods": {"one_run": bound, "gaussian_dp": estimate},
    }


def _report() -> dict:
    restricted = {lv: _tpr(0.123, "loss") for lv in LEVELS}
    return {
        "privacy_level": "0.01",
        "defenses": {
            "undefended": _entry("none", 0.9, (0.3, 0.05)),
            "rm": _entry(
                "sample-aware",
                0.85,
                (0.2, 0.04),
                comparable=False,
                missing_attacks=["lira_online"],
                undefended_same_attacks=restricted,
                models_reused=4,
                epsilon=3.5,
                dp_audit=with_bounds(_dp_doc(), "defenses/rm/dp_audit/dp_audit.html"),
            ),
        },
        "sample_aware_vs_uniform": [],
    }


def test_defences_page_uses_the_shared_style_and_marks_incomparable_rows():
    html = render_defenses(_report())
    assert "--accent" in html  # templates/_style.html
    assert html.count('href="defenses/') == 3  # two audit reports and one DP audit page
    assert 'class="apart"' in html and "without lira_online" in html
    assert "undefended: 0.1230" in html and "0.0400" in html
    assert html.count('<sup class="mark">*</sup>') == 3  # two unresolved cells and the note
    assert html.count("&dagger;") == 2  # the reused models' cell and the note
    assert "3.50" in html and "&epsilon; (accountant)" in html
    assert "data:image/png;base64," in html
    assert "Query monitor" not in html and "uniform counterparts" not in html


def test_defences_page_shows_valid_bounds_and_why_others_have_none():
    html = render_defenses(_report())
    # the audited defence: its bound (never the estimate), linked to its DP audit page
    assert "one_run &ge; 0.73" in html and "gaussian_dp" not in html
    assert 'href="defenses/rm/dp_audit/dp_audit.html"' in html and "3.67" in html
    # the other: no number, the reason in words
    assert "no valid bound" in html and NOT_DP in html.replace("&#39;", "'")
    assert "1.25" not in html
