"""The audit settings are the one place the configuration's attack specs become attacks."""

from mialens.audit.settings import AuditSettings, declare_attacks
from mialens.workflows.config import validate_config

SPECS = ["loss", {"name": "lira_offline", "variance": "global"}, "lira_online", "boundary"]


def test_build_attacks_gives_fresh_attacks_in_order():
    settings = AuditSettings(attacks=SPECS)
    first, second = settings.build_attacks(), settings.build_attacks()
    assert [a.name for a in first] == ["loss", "lira_offline", "lira_online", "boundary"]
    assert first[1].params.variance == "global"
    assert all(a is not b and not a.fitted_ for a, b in zip(first, second, strict=True))


def test_declarations_are_read_from_the_attacks():
    declared = declare_attacks(SPECS)
    assert [(a.name, a.references, a.threat_model) for a in declared] == [
        ("loss", "none", "score"),
        ("lira_offline", "offline", "score"),
        ("lira_online", "online", "score"),
        ("boundary", "none", "label"),
    ]
    assert AuditSettings(attacks=SPECS).attack_names == [a.name for a in declared]


def test_declarations_follow_a_changed_attack_list():
    settings = AuditSettings(attacks=["loss", "gap"])
    assert settings.attack_names == ["loss", "gap"]
    assert settings.model_copy(update={"attacks": ["mentr"]}).attack_names == ["mentr"]


def test_the_declarations_stay_out_of_the_dump():
    config = validate_config({"dataset": {"name": "digits"}, "audit": {"attacks": SPECS}})
    assert config.audit.attack_names  # declarations read
    dumped = config.model_dump(mode="json")
    assert set(dumped["audit"]) == set(AuditSettings.model_fields)
    assert validate_config(dumped) == config
