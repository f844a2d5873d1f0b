"""The record of expected numbers on the digits demo at its defaults.

The checks live in ``benchmarks/expected_numbers.py`` (which also runs Location30): RMIA
online keeps at least 0.95 x LiRA online's TPR at 1% FPR, and only attacks whose score is
discrete by nature have large tie groups, with the levels they hide flagged. A change
that silently weakens an attack or brings back saturated scores fails here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np

from mialens.metrics.leakage import AttackLeakage, TieShare, leakage_summary
from mialens.workflows.audit import run_audit
from mialens.workflows.config import load_config
from mialens.workflows.outputs import load_result

_SPEC = importlib.util.spec_from_file_location(
    "expected_numbers", Path(__file__).resolve().parents[1] / "benchmarks" / "expected_numbers.py"
)
expected = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(expected)


def test_digits_demo_keeps_the_expected_orderings(tmp_path):
    demo = resources.files("mialens.configs") / "demo.yaml"
    run_audit(load_config(demo), out_dir=tmp_path)
    checks = expected.check(load_result(tmp_path).metrics)
    assert checks["rmia_vs_lira"]["ok"], checks["rmia_vs_lira"]
    bad = {name: t for name, t in checks["ties"]["attacks"].items() if not t["ok"]}
    assert not bad, bad
    attack_r = checks["ties"]["attacks"]["attack_r"]
    assert attack_r["discrete"] and "0.01" in attack_r["unreachable_levels"]


def test_a_saturated_continuous_score_fails_the_tie_check():
    members = np.arange(200) % 2 == 0
    base = leakage_summary(np.linspace(0, 1, 200)[None, :], members[None, :], [0.01], n_boot=0)
    level = replace(base.at(0.01), reachable=False)

    def tied(share: float) -> AttackLeakage:
        return replace(base, tie_share=TieShare(share, [share]), tpr_at_fpr={0.01: level})

    ties = expected.check({"loss": tied(0.1), "gap": tied(0.5)})["ties"]
    assert not ties["attacks"]["loss"]["ok"]  # continuous by nature: a defect
    assert ties["attacks"]["gap"]["ok"]  # discrete by nature: reported
    assert ties["attacks"]["gap"]["unreachable_levels"] == ["0.01"]
    assert not ties["ok"]
