"""study.json and the study page report the best measure of each group, not one circular link."""

import json

import numpy as np
import pytest

from mialens.analysis.outliers import GROUPS
from mialens.analysis.study import study_findings, summarize_study
from mialens.report.study_page import render_study
from mialens.workflows.study import load_study, run_study

GAPS = [0.3, 0.1, 0.4, 0.2]  # settings in shuffled gap order


def _measure(rho: float, auc: float) -> dict:
    return {"rho": rho, "ci_low": rho - 0.1, "ci_high": rho + 0.1, "p_holm": 0.01,
            "within_class_rho": rho, "within_class_p_holm": 0.01, "auc": auc}  # fmt: skip


def _group(measure: str, auc: float) -> dict:
    return {"measure": measure, "auc": auc, "ci_low": auc - 0.05, "ci_high": auc + 0.05,
            "p_holm": 0.01, "within_class_rho": 0.2, "within_class_p_holm": 0.01,
            "measures": 2, "auc_min": 0.5}  # fmt: skip


def _rows() -> list[dict]:
    """Four settings: the output measure out_neg_margin rises with the gap and has the top
    within-class rho; input_knn (mean AUC 0.65) beats input_lof (0.55) and falls with it."""
    rows = []
    for i, gap in enumerate(GAPS):
        rows.append(
            {
                "name": f"s{i}",
                "generalization_gap": gap,
                "test_acc": 0.9 - gap,
                "tpr_at_fpr": {"0.01": gap / 2},
                "tpr_resolved": {"0.01": True},
                "tpr_reachable": {"0.01": i != 1},
                "measures": {
                    "out_neg_margin": _measure(0.5 + gap, 0.9),
                    "input_knn": _measure(0.5 - gap, 0.6 + 0.1 * (i % 2)),
                    "input_lof": _measure(0.1, 0.55),
                    "memorization": _measure(0.9, 0.95),
                },
                "groups": {
                    "geometric": _group("input_knn", 0.6 + 0.1 * (i % 2)),
                    "output": _group("out_neg_margin", 0.9),
                    "memorization": _group("memorization", 0.95),
                },
                "intra_class_outliers_supported": i == 2,
            }
        )
    return rows


def test_gap_versus_link_uses_the_best_geometric_measure():
    rows = _rows()
    out = summarize_study(rows, ["0.01"])
    assert out["common_measure"] == "out_neg_margin"  # the old key, kept as it was
    assert out["geometric_measure"] == "input_knn"
    # input_knn's rho is 0.5 - gap: exactly decreasing in the gap
    assert out["gap_vs_link"] == {"measure": "input_knn", "group": "geometric", "rho": -1.0,
                                  "p": 0.0, "settings": 4}  # fmt: skip
    assert rows[2]["geometric"]["rho"] == pytest.approx(0.1)
    assert out["intra_class_outliers_supported"] == ["s2"]
    assert out["small_gap"]["intra_class_outliers_supported"] == {"s1": False, "s3": False}


def test_study_page_shows_each_groups_best_measure_and_the_claim():
    rows = _rows()
    for row in rows:
        row.update(name=row["name"], train_acc=0.99, auc=0.6, advantage=0.1, epsilon=None,
                   vulnerable={"0.01": 3}, overrides="(base)")  # fmt: skip
    doc = {"name": "t", "dataset": "d", "attack": "lira_online", "created": "now",
           "description": None, "fpr_levels": ["0.01"], "vulnerable_levels": ["0.01"],
           "settings": rows, "findings": []}  # fmt: skip
    doc.update(summarize_study(rows, ["0.01"]))
    doc["findings"] = study_findings(doc)
    assert doc["findings"][-1].startswith(
        "Link versus generalisation gap, with the best geometric measure input_knn"
    )
    page = render_study(doc, rows)
    for title in GROUPS.values():
        assert title.replace("'", "&#39;") in page
    assert '0.700<span class="ci">[0.650, 0.750]</span>' in page  # s1's geometric AUC
    assert page.count("<code>out_neg_margin</code>") == 4
    assert '<sup class="mark">†</sup>' in page and "tie group of scores straddles" in page
    assert page.count("<td>yes</td>") == 1 and page.count("<td>no</td>") == 3
    text = " ".join(page.split())  # the caption's line breaks are the template's
    assert "best geometric measure, input_knn" in text and "Spearman ρ -1.00" in text


STUDY = """
name: tiny
base:
  dataset: {name: digits}
  model: {hidden: [32]}
  train: {epochs: 3, batch_size: 64}
  audit: {num_models: 4, pool_size: 300, bootstrap: 0, attacks: [loss, lira_offline]}
  analysis: {spaces: [input], embedding_samples: 0, iforest_trees: 10, gallery: 0}
settings:
  - {name: original}
  - {name: l2, set: {train.weight_decay: 0.01}}
"""


def test_study_json_holds_the_headline_of_every_setting(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY)
    out = tmp_path / "out"
    run_study(*load_study(path), out)
    doc = json.loads((out / "study.json").read_text())
    for row in doc["settings"]:
        summary = json.loads((out / "settings" / row["name"] / "analysis" / "summary.json")
                             .read_text())  # fmt: skip
        assert row["groups"] == summary["headline"]["groups"]
        assert (
            row["intra_class_outliers_supported"]
            is summary["headline"]["intra_class_outliers_supported"]
        )
        assert set(row["tpr_reachable"]) == set(row["tpr_at_fpr"])
        assert "link" in row and "common" in row  # the old keys stay
        assert row["groups"]["geometric"]["measure"].startswith("input_")
    assert doc["geometric_measure"].startswith("input_") and doc["group_names"] == GROUPS
    page = (out / "report.html").read_text()
    assert "Which samples leak" in page and doc["geometric_measure"] in page
    # a setting analysed before the headline existed is analysed again, not reused
    summary_path = out / "settings" / "l2" / "analysis" / "summary.json"
    old = json.loads(summary_path.read_text())
    del old["headline"]
    summary_path.write_text(json.dumps(old))
    again = run_study(*load_study(path), out)
    assert "headline" in json.loads(summary_path.read_text())
    assert [r["groups"] for r in again["settings"]] == [r["groups"] for r in doc["settings"]]
    assert np.isfinite(again["settings"][1]["auc"])
