"""One audited DP-SGD run with canaries (mialens.audit.dp_game), on a tiny MLP and digits."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

import mialens.audit.dp_game as dp_game
from mialens.audit.dp_game import available_scores, play_canary_game, reference_inclusions
from mialens.data.dataset import Dataset
from mialens.dp.canaries import inclusion_bits
from mialens.errors import ConfigError
from mialens.models.architectures import ModelConfig
from mialens.models.recipe import TrainConfig
from mialens.models.store import ModelStore

MODEL = ModelConfig(hidden=[16])


@pytest.fixture(scope="module")
def digits() -> Dataset:
    data = load_digits()
    ids = np.random.default_rng(0).permutation(20_000)[: len(data.target)] * 5 + 7
    x = (data.data / 16.0).astype(np.float32)
    return Dataset("digits", x, data.target, ids, 10)


def _recipe(sigma=1.0, epochs=2, **changes) -> TrainConfig:
    dp = {"noise_multiplier": sigma, "max_grad_norm": 1.0}
    fields = dict(optimizer="sgd", momentum=0.0, lr=0.5, epochs=epochs, batch_size=128, dp=dp)
    return TrainConfig(**{**fields, **changes})


def test_dirac_game_scores_every_canary_in_both_views_and_records_the_run(digits):
    game = play_canary_game(digits, MODEL, _recipe(), kind="dirac", count=60, seed=1,
                            view="all_steps", train_size=900)  # fmt: skip
    assert game.m == 60 and game.train_size == 900 and game.kind == "dirac"
    assert set(game.scores) == {"dirac_final", "dirac_all_steps", "dirac_all_steps_known_batches"}
    assert all(v.shape == (60,) and np.isfinite(v).all() for v in game.scores.values())
    assert game.sample_rate == 1 / 8 and game.steps == 16 and game.noise_multiplier == 1.0
    assert game.max_grad_norm == 1.0 and game.delta == 1e-5 and game.accountant_epsilon > 0
    record = json.loads(json.dumps(game.to_json()))
    assert record["canaries"]["seed"] == 1
    bits = record["canaries"]["inclusion_bits"]
    assert bits == "".join("1" if b else "0" for b in game.included)
    buf = io.BytesIO()
    np.savez(buf, **game.arrays())
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as saved:
        np.testing.assert_array_equal(saved["score_dirac_final"], game.scores["dirac_final"])
        np.testing.assert_array_equal(saved["included"], game.included)


def test_dirac_canaries_separate_at_large_epsilon(digits):
    game = play_canary_game(digits, MODEL, _recipe(sigma=0.3, epochs=4), kind="dirac",
                            count=100, seed=2, view="all_steps", train_size=1000)  # fmt: skip
    assert roc_auc_score(game.included, game.scores["dirac_all_steps"]) > 0.8
    assert roc_auc_score(game.included, game.scores["dirac_final"]) > 0.7
    assert roc_auc_score(game.included, game.scores["dirac_all_steps_known_batches"]) > 0.8


def test_input_game_with_references_gives_every_attack(digits):
    game = play_canary_game(digits, MODEL, _recipe(), kind="mislabeled", count=40, seed=3,
                            references=2, train_size=600, population_size=100)  # fmt: skip
    assert set(game.scores) == {
        "loss",
        "lira_online",
        "lira_offline",
        "rmia_online",
        "rmia_offline",
    }
    assert all(v.shape == (40,) and np.isfinite(v).all() for v in game.scores.values())
    assert game.train_size == 600 and game.references == 2
    # the target trains on the data plus its included canaries: q = 1 / ceil(n / 128)
    assert game.sample_rate == 1 / -(-(600 + int(game.included.sum())) // 128)
    assert game.canaries["kind"] == "mislabeled"


@pytest.mark.parametrize("kind", ["ood", "crafted"])
def test_ood_and_crafted_games_score_the_loss(digits, kind):
    game = play_canary_game(digits, MODEL, _recipe(epochs=1), kind=kind, count=20, seed=4,
                            train_size=300)  # fmt: skip
    assert list(game.scores) == ["loss"] and (game.scores["loss"] <= 0).all()


def test_reference_inclusions_come_in_complementary_pairs_of_their_own_draws():
    member = reference_inclusions(500, 4, seed=5)
    assert member.shape == (4, 500) and member.dtype == bool
    np.testing.assert_array_equal(member[1], ~member[0])
    np.testing.assert_array_equal(member[3], ~member[2])
    assert (member.sum(0) == 2).all() and not np.array_equal(member[0], member[2])
    target = inclusion_bits(500, 5)
    assert abs(np.mean(member[0] == target) - 0.5) < 0.1  # unrelated to the target's bits


def test_a_rerun_reuses_the_store_and_a_lost_record_is_retrained(digits, tmp_path, monkeypatch):
    store = ModelStore(tmp_path)
    settings = dict(kind="dirac", count=30, seed=6, view="all_steps", train_size=500, store=store)
    first = play_canary_game(digits, MODEL, _recipe(), **settings)

    def no_training(*args, **kwargs):
        raise AssertionError("a cached model was trained again")

    with monkeypatch.context() as patch:
        patch.setattr(dp_game, "train_model", no_training)
        again = play_canary_game(digits, MODEL, _recipe(), **settings)
    for name, values in first.scores.items():
        np.testing.assert_array_equal(again.scores[name], values)
    assert again.steps == first.steps and again.accountant_epsilon == first.accountant_epsilon
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (entry / "dirac_observations.npy").unlink()  # killed before the record was written
    resumed = play_canary_game(digits, MODEL, _recipe(), **settings)
    for name, values in first.scores.items():
        np.testing.assert_array_equal(resumed.scores[name], values)
    other = play_canary_game(digits, MODEL, _recipe(), **{**settings, "seed": 7})
    assert not np.array_equal(other.included, first.included)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "poison"}, "unknown canary kind 'poison'"),
        ({"count": 1}, "at least 2 canaries"),
        ({"view": "every_step"}, "unknown canary view"),
        ({"view": "all_steps"}, "input canaries are scored on the final model"),
        ({"references": 3}, "complementary pairs"),
        ({"kind": "dirac", "references": 2}, "complementary pairs"),
        ({"references": -2}, "references must be an integer >= 0"),
        ({"score_names": ["lira_online"]}, r"scores \['lira_online'\] are not available"),
        ({"score_names": ["dirac_final"]}, "are not available for 'mislabeled'"),
        ({"count": 1700, "train_size": 100}, "leave 97 for training"),
        ({"train_size": 0}, "train_size is 0"),
        ({"references": 2, "population_size": 0}, "population_size >= 1"),
    ],
)
def test_impossible_settings_are_refused_before_training(digits, monkeypatch, changes, message):
    monkeypatch.setattr(dp_game, "train_model", None)  # any training would fail differently
    settings = {"kind": "mislabeled", "count": 20, "seed": 0, **changes}
    with pytest.raises(ConfigError, match=message):
        play_canary_game(digits, MODEL, _recipe(), **settings)


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        (TrainConfig(optimizer="sgd", momentum=0.0), "set train.dp"),
        (_recipe(optimizer="adam"), "needs plain SGD"),
        (_recipe(early_stopping={"patience": 2}), "remove train.early_stopping"),
    ],
)
def test_recipes_the_game_cannot_audit_are_refused(digits, recipe, message):
    with pytest.raises(ConfigError, match=message):
        play_canary_game(digits, MODEL, recipe, kind="dirac", count=20, seed=0)


def test_all_steps_view_drops_the_final_score_for_adam():
    adam = _recipe(optimizer="adam")
    both = ["dirac_all_steps", "dirac_all_steps_known_batches"]
    assert available_scores("dirac", "all_steps", 0, adam) == both
    assert available_scores("dirac", "all_steps", 0, _recipe()) == ["dirac_final", *both]
    assert available_scores("dirac", "final", 0, _recipe()) == ["dirac_final"]
    assert available_scores("ood", "final", 2, adam)[:2] == ["loss", "lira_online"]
