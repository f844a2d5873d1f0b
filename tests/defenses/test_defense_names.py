"""Defence names: unique, and each in its own safe run folder."""

import pytest

from mialens.defenses.config import DefenseSpec, defense_folder
from mialens.errors import ConfigError
from mialens.workflows.config import validate_config
from mialens.workflows.defend import evaluate_defenses


def config(*specs):
    return validate_config(
        {
            "dataset": {"name": "digits"},
            "model": {"hidden": [16]},
            "train": {"epochs": 1, "batch_size": 64},
            "audit": {"num_models": 2, "pool_size": 200, "bootstrap": 0, "attacks": ["loss"]},
            "defenses": {"evaluate": list(specs)},
        }
    )


def test_duplicate_defence_names_are_refused_naming_the_duplicate():
    with pytest.raises(ConfigError, match="two defences are named 'wd'"):
        config({"name": "wd", "train": {"weight_decay": 0.01}}, {"name": "wd", "output": "top_k"})


def test_names_differing_only_in_case_are_refused():
    with pytest.raises(ConfigError, match="'WD' and 'wd' would share the run folder"):
        config({"name": "WD", "output": "top_k"}, {"name": "wd", "output": "label_only"})


def test_empty_name_is_refused():
    with pytest.raises(ConfigError, match="name"):
        config({"name": "", "output": "top_k"})


@pytest.mark.parametrize("name", ["..", ".", "/etc", "a/b", "a\\b", "wd a", ".hidden", "é", "-"])
def test_unsafe_names_get_a_hashed_folder_inside_the_defences_folder(name):
    folder = defense_folder(name)
    assert folder not in {"", ".", ".."} and not folder.startswith(".")
    assert "/" not in folder and "\\" not in folder
    assert len(folder) <= 60 and folder.endswith(defense_folder(name)[-10:])


def test_folders_are_one_to_one_with_names():
    names = ["wd a", "wd_a", "wd/a", "wd-a", "l2_5e-4", "dropout_0.5", "x-0123456789", "x"]
    folders = [defense_folder(n) for n in names]
    assert len(set(folders)) == len(names)
    # plain names keep their folder, so finished runs are found again
    assert defense_folder("l2_5e-4") == "l2_5e-4" and defense_folder("dropout_0.5") == "dropout_0.5"
    assert defense_folder("x-0123456789") != "x-0123456789"
    assert DefenseSpec(name="wd a").folder == defense_folder("wd a")


def test_dot_dot_defence_writes_inside_its_own_folder(tmp_path):
    report = evaluate_defenses(config({"name": "..", "output": "top_k"}), tmp_path)
    assert set(report["defenses"]) == {"undefended", ".."}
    assert not (tmp_path / "metrics.json").exists()
    assert (tmp_path / "defenses" / defense_folder("..") / "metrics.json").exists()
    assert (tmp_path / "defenses" / "undefended" / "metrics.json").exists()
