"""The defences page from a hand-built evaluation: the shared template environment and style."""

from __future__ import annotations

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
        "epsilon_empirical": 1.25,
        "training_overhead": 1.0,
        "models_reused": 0,
        "inference_seconds_per_answer": 0.0,
        "comparable": True,
        "missing_attacks": [],
        "undefended_same_attacks": None,
        **extra,
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
            ),
        },
        "sample_aware_vs_uniform": [],
    }


def test_defences_page_uses_the_shared_style_and_marks_incomparable_rows():
    html = render_defenses(_report())
    assert "--accent" in html  # templates/_style.html
    assert html.count('href="defenses/') == 2
    assert 'class="apart"' in html and "without lira_online" in html
    assert "undefended: 0.1230" in html and "0.0400" in html
    assert html.count('<sup class="mark">*</sup>') == 3  # two unresolved cells and the note
    assert html.count("&dagger;") == 2  # the reused models' cell and the note
    assert "3.50" in html and "&epsilon; (accountant)" in html
    assert "data:image/png;base64," in html
    assert "Query monitor" not in html and "uniform counterparts" not in html
