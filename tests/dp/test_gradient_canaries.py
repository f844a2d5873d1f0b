"""White-box Dirac gradient canaries (mialens.dp.gradient_canaries)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mialens.dp.canaries import inclusion_bits
from mialens.dp.gradient_canaries import (
    DiracCanaries,
    all_steps_scores,
    check_recipe,
    choose_coordinates,
    dp_sample_rate,
    final_scores,
    step_log_likelihood_ratio,
)
from mialens.errors import ConfigError
from mialens.models.architectures import ModelConfig, build_model
from mialens.models.recipe import TrainConfig
from mialens.models.step import Step
from mialens.models.training import train_model

D, CLASSES = 20, 3
DEAD = (1, 4, 5, 9, 11, 12, 14, 16, 17, 19)  # input features that are always 0


def _data(n=160, seed=0):
    gen = np.random.default_rng(seed)
    x = gen.normal(size=(n, D)).astype(np.float32)
    y = gen.integers(0, CLASSES, n)
    x[np.arange(n), y] += 2.0
    x[:, list(DEAD)] = 0.0
    return x, y


def _build(seed=0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(hidden=[]), (D,), CLASSES)  # linear: Flatten, head


def _recipe(sigma=1.0, epochs=4, batch=16, clip=0.5, **changes):
    dp = {"noise_multiplier": sigma, "max_grad_norm": clip}
    fields = dict(optimizer="sgd", momentum=0.0, lr=0.2, epochs=epochs, batch_size=batch, dp=dp)
    return TrainConfig(**{**fields, **changes})


def test_step_log_likelihood_ratio_exact_values():
    # x = 1/2 is where both Gaussians are equally likely: the ratio is 1 at any q
    assert step_log_likelihood_ratio(np.array([0.5]), 0.3, 2.0)[0] == pytest.approx(0.0, abs=1e-15)
    # x = 1, sigma = 1, q = 1/2: log(1/2 + e^{1/2} / 2)
    value = step_log_likelihood_ratio(np.array([1.0]), 0.5, 1.0)[0]
    assert value == pytest.approx(math.log(0.5 + 0.5 * math.exp(0.5)), rel=1e-14)
    # x = 0, sigma = 1/2, q = 0.1: log(0.9 + 0.1 e^{-2})
    value = step_log_likelihood_ratio(np.array([0.0]), 0.1, 0.5)[0]
    assert value == pytest.approx(math.log(0.9 + 0.1 * math.exp(-2.0)), rel=1e-14)
    # q = 1: the Gaussian log ratio (2x - 1) / (2 sigma^2); no overflow far out
    assert step_log_likelihood_ratio(np.array([3.0]), 1.0, 1.0)[0] == pytest.approx(2.5)
    far = step_log_likelihood_ratio(np.array([1e4]), 0.01, 0.1)[0]
    assert far == pytest.approx(math.log(0.01) + (2e4 - 1) / 0.02, rel=1e-12)


def test_all_steps_scores_sum_the_ratios_over_steps():
    obs = np.array([[0.5, 1.0], [0.5, 0.0]])  # (steps, canaries)
    scores = all_steps_scores(obs, 0.5, 1.0)
    expected = math.log(0.5 + 0.5 * math.exp(0.5)) + math.log(0.5 + 0.5 * math.exp(-0.5))
    np.testing.assert_allclose(scores, [0.0, expected], rtol=1e-14)
    with pytest.raises(ConfigError, match="0 < q <= 1"):
        all_steps_scores(obs, 0.0, 1.0)


def test_final_scores_are_the_negative_change_in_units_of_c():
    canaries = DiracCanaries(
        ids=np.array(["canary-00000", "canary-00001", "canary-00002"]),
        tensors=("w", "b", "w"),
        flat_index=np.array([3, 0, 0]),
        included=np.array([True, False, True]),
        clip_norm=0.5,
        seed=0,
    )
    initial = {"w": torch.zeros(2, 2), "b": torch.ones(1)}
    final = {"w": torch.tensor([[-0.1, 0.0], [0.0, -0.3]]), "b": torch.tensor([1.2])}
    scores = final_scores(canaries, initial, final, lr=0.1, expected_batch_size=4)
    # -(change) * B / (lr C) = -(change) * 80
    np.testing.assert_allclose(scores, [24.0, -16.0, 8.0], rtol=1e-6)


@pytest.mark.parametrize(("n", "batch"), [(160, 16), (161, 16), (50, 64), (1000, 7)])
def test_sample_rate_is_opacus_loaders(n, batch):
    from opacus.data_loader import DPDataLoader

    data = torch.utils.data.TensorDataset(torch.zeros(n, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=batch)
    assert dp_sample_rate(n, batch) == DPDataLoader.from_data_loader(loader).sample_rate


def test_recipes_whose_update_is_not_the_noisy_sum_are_refused_for_the_final_view():
    check_recipe(_recipe(), "final")
    for changes, word in (({"optimizer": "adam"}, "adam"), ({"momentum": 0.9}, "momentum 0.9"),
                          ({"weight_decay": 0.01}, "weight_decay 0.01")):  # fmt: skip
        config = _recipe(**changes)
        with pytest.raises(ConfigError, match=f"needs plain SGD.*{word}"):
            check_recipe(config, "final")
        check_recipe(config, "all_steps")  # the noisy sums are read directly
    with pytest.raises(ConfigError, match=r"set train\.dp"):
        check_recipe(TrainConfig(optimizer="sgd", momentum=0.0), "all_steps")
    with pytest.raises(ConfigError, match="unknown canary view"):
        check_recipe(_recipe(), "every_step")


def test_coordinates_are_those_the_data_never_touches():
    x, y = _data()
    canaries = choose_coordinates(_build(), x, y, count=2 * CLASSES, seed=4, clip_norm=0.5)
    assert set(canaries.tensors) == {"head.weight"}  # the weights of the dead inputs
    assert {int(i) % D for i in canaries.flat_index} <= set(DEAD)
    assert len(set(canaries.flat_index.tolist())) == 2 * CLASSES
    np.testing.assert_array_equal(canaries.included, inclusion_bits(2 * CLASSES, seed=4))
    other = choose_coordinates(_build(), x, y, count=2 * CLASSES, seed=5, clip_norm=0.5)
    assert set(other.flat_index.tolist()) != set(canaries.flat_index.tolist())  # seeded ties
    with pytest.raises(ConfigError, match="64 Dirac canaries need 64 distinct coordinates"):
        choose_coordinates(_build(), x, y, count=64, seed=0, clip_norm=0.5)


def test_hook_adds_exactly_c_at_sampled_included_canaries_and_nothing_else():
    x, y = _data()
    canaries = choose_coordinates(_build(), x, y, count=12, seed=1, clip_norm=0.5)
    insertion = canaries.hook(dp_sample_rate(len(x), 16), seed=2)
    added = []

    seen = []

    def watched(grads):
        before = {n: s.clone() for n, s in grads.summed.items()}
        insertion(grads)
        added.append({n: grads.summed[n] - before[n] for n in before})
        seen.append(canaries.values(before) / 0.5)

    train_model(_build, x, y, _recipe(), seed=0, step=Step(grad_hook=watched))
    assert len(added) == len(insertion.sampled) == 4 * 10
    for diff, drawn in zip(added, insertion.sampled, strict=True):
        expected = {n: torch.zeros_like(d) for n, d in diff.items()}
        for i in np.flatnonzero(drawn):
            expected[canaries.tensors[i]].view(-1)[canaries.flat_index[i]] = 0.5
        for name, d in diff.items():
            torch.testing.assert_close(d, expected[name], rtol=0, atol=0)
    np.testing.assert_array_equal(insertion.data_gradients(), np.stack(seen))  # before adding
    drawn = np.stack(insertion.sampled)
    assert not drawn[:, ~canaries.included].any() and drawn[:, canaries.included].any()
    rate = drawn[:, canaries.included].mean()  # Poisson sampling at q = 1/10
    assert abs(rate - 0.1) < 4 * math.sqrt(0.1 * 0.9 / drawn[:, canaries.included].size)


def _audited_run(sigma, seed, count=12, epochs=4):
    x, y = _data(seed=seed)
    config = _recipe(sigma=sigma, epochs=epochs)
    initial = _build(seed).state_dict()
    canaries = choose_coordinates(_build(seed), x, y, count=count, seed=seed, clip_norm=0.5)
    q = dp_sample_rate(len(x), 16)
    insertion = canaries.hook(q, seed)
    result = train_model(lambda: _build(seed), x, y, config, seed=seed, step=insertion.step())
    final = final_scores(canaries, initial, result.state_dict, lr=0.2, expected_batch_size=16)
    steps = all_steps_scores(insertion.observations(), q, insertion.noise_multiplier)
    return canaries, insertion, final, steps


def test_final_score_is_the_sum_of_the_observed_noisy_gradients_under_plain_sgd():
    _, insertion, final, _ = _audited_run(sigma=1.0, seed=3)
    observations = insertion.observations()
    assert observations.shape == (40, 12) and insertion.noise_multiplier == 1.0
    np.testing.assert_allclose(final, observations.sum(0), rtol=1e-4, atol=1e-4)
    # the dead coordinates see no data: each observation is 1 x sampled + N(0, sigma^2)
    residual = observations - np.stack(insertion.sampled)
    assert abs(residual.std() - 1.0) < 0.15 and abs(residual.mean()) < 0.15


def test_known_batches_leave_exactly_the_canary_and_the_noise_on_touched_coordinates():
    _, insertion, _, _ = _audited_run(sigma=0.8, seed=4, count=50)  # 20 coordinates see data
    data = insertion.data_gradients()
    assert (np.abs(data).sum(0) > 0).sum() >= 20
    residual = insertion.observations() - data - np.stack(insertion.sampled)
    assert abs(residual.std() - 0.8) < 0.08 and abs(residual.mean()) < 0.08


def test_dirac_scores_separate_in_from_out_at_large_epsilon_and_ideally_at_tiny_noise():
    canaries, insertion, final, steps = _audited_run(sigma=0.02, seed=6, count=30, epochs=8)
    ever = np.stack(insertion.sampled).any(0)  # an IN canary never sampled leaves no trace
    assert roc_auc_score(ever, final) == 1.0 and roc_auc_score(ever, steps) == 1.0
    bits, finals, alls = [], [], []
    for seed in range(3):  # sigma 0.5: epsilon in the tens; separated, not ideally
        canaries, _, final, steps = _audited_run(sigma=0.5, seed=seed, count=30, epochs=8)
        bits.append(canaries.included), finals.append(final), alls.append(steps)
    auc_final = roc_auc_score(np.concatenate(bits), np.concatenate(finals))
    auc_steps = roc_auc_score(np.concatenate(bits), np.concatenate(alls))
    assert 0.7 < auc_final < 1.0 and 0.7 < auc_steps < 1.0
