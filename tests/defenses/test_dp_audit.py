"""The epsilon a defence evaluation reports: a valid bound from independent canaries, or
the reason there is none (the membership audit's paired inclusions give no bound)."""

import json
import math

import pytest

from mialens.defenses.dp_audit import NOT_CONFIGURED, NOT_DP, with_bounds, without_bound
from mialens.dp.many_run import clopper_pearson_upper, epsilon_from_rates
from mialens.errors import ConfigError
from mialens.workflows.config import validate_config
from mialens.workflows.defend import evaluate_defenses


def test_clopper_pearson_zero_errors_is_exact():
    # P[0 errors | p] = (1 - p)^n = alpha  ->  p = 1 - alpha^(1/n)
    assert clopper_pearson_upper(0, 50, 0.05) == pytest.approx(1 - 0.05 ** (1 / 50))
    assert clopper_pearson_upper(50, 50, 0.05) == 1.0


def test_epsilon_bound_hand_values():
    # FPR 0.1, FNR 0.2, delta 0: max(log(0.9 / 0.2), log(0.8 / 0.1)) = log 8
    assert epsilon_from_rates(0.1, 0.2, 0.0) == pytest.approx(math.log(8))
    assert epsilon_from_rates(0.5, 0.5, 0.0) == 0.0
    assert epsilon_from_rates(0.0, 0.3, 0.0) == math.inf  # a perfect test certifies nothing finite


def test_without_independent_canaries_there_is_a_reason_not_a_number():
    assert without_bound(False) == {"valid": False, "reason": NOT_DP}
    assert without_bound(True) == {"valid": False, "reason": NOT_CONFIGURED}
    assert "complementary halves" in NOT_DP and "dp_audit:" in NOT_CONFIGURED


def test_with_bounds_keeps_only_bounds():
    doc = {
        "accountant_epsilon": 2.0,
        "delta": 1e-5,
        "canaries": {"m": 50, "kind": "dirac"},
        "methods": {
            "one_run": {"method": "one_run_steinke2023", "kind": "bound", "epsilon_lower": 0.5,
                        "ratio": 0.25, "ceiling": 1.5, "beta": 0.05},
            "gaussian_dp": {"method": "gaussian_dp_nasr2023", "kind": "estimate",
                            "epsilon_estimate": 3.0, "ratio": 1.5},
        },
    }  # fmt: skip
    entry = with_bounds(doc, "defenses/dp/dp_audit/dp_audit.html")
    assert entry["valid"] and set(entry["bounds"]) == {"one_run"}
    assert entry["bounds"]["one_run"]["epsilon_lower"] == 0.5
    assert "independently" in entry["what"] and entry["accountant_epsilon"] == 2.0


def _config(**extra):
    return {
        "dataset": {"name": "digits"},
        "model": {"hidden": [16]},
        "train": {"epochs": 1, "batch_size": 128},
        "audit": {"num_models": 2, "pool_size": 300, "bootstrap": 0, "attacks": ["loss"]},
        "defenses": {
            "include_undefended": False,
            "evaluate": [
                {"name": "dp", "train": {"optimizer": "sgd", "momentum": 0.0, "lr": 0.5,
                                         "dp": {"noise_multiplier": 1.0}}},
                {"name": "l2", "train": {"weight_decay": 0.01}},
            ],
        },
        **extra,
    }  # fmt: skip


def test_dp_sgd_defence_gets_the_bounds_of_its_own_canary_run(tmp_path):
    config = validate_config(_config(dp_audit={"count": 20, "methods": ["one_run"]}))
    report = evaluate_defenses(config, tmp_path)
    dp, l2 = report["defenses"]["dp"]["dp_audit"], report["defenses"]["l2"]["dp_audit"]
    assert dp["valid"] and l2 == {"valid": False, "reason": NOT_DP}
    doc = json.loads((tmp_path / "defenses" / "dp" / "dp_audit" / "dp_audit.json").read_text())
    assert dp["bounds"]["one_run"]["epsilon_lower"] == doc["methods"]["one_run"]["epsilon_lower"]
    assert 0 <= dp["bounds"]["one_run"]["epsilon_lower"] <= dp["accountant_epsilon"]
    saved = json.loads((tmp_path / "defenses.json").read_text())
    assert saved["defenses"]["dp"]["dp_audit"] == dp
    assert "epsilon_empirical" not in saved["defenses"]["dp"]


def test_dp_audit_of_defences_is_checked_before_any_training():
    adam = _config(dp_audit={"count": 20})
    adam["defenses"]["evaluate"][0]["train"]["optimizer"] = "adam"
    with pytest.raises(ConfigError, match=r"defence 'dp'.*plain SGD"):
        validate_config(adam)
    with pytest.raises(ConfigError, match="needs a defenses: section"):
        validate_config({**_config(dp_audit={}), "defenses": None})


def test_too_many_canaries_is_refused_before_the_first_defence_is_audited(tmp_path):
    spec = _config(dp_audit={"count": 5000, "kind": "mislabeled"})
    spec["defenses"]["evaluate"].reverse()  # the non-DP defence would be audited first
    config = validate_config(spec)
    with pytest.raises(ConfigError, match="digits has 1797 samples: 5000 canary sources"):
        evaluate_defenses(config, tmp_path)
    assert not (tmp_path / "defenses").exists()
