"""The smoothed-median candidates of the bank, on series worked out by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from forecaster import features
from forecaster.config import ModelConfig

DAY = 288
NAMES = ("median14x5_adjusted", "median14x5_damped", "median14x5_adjusted_1h")


def bank_of(values: np.ndarray, config: ModelConfig | None = None) -> dict[str, np.ndarray]:
    config = config or ModelConfig()
    return features.bank(values[None, :].astype(np.float64), values.size, 300, config)


def test_a_level_step_two_hours_ago_moves_every_smoothed_median() -> None:
    # 100 for 15 days, 150 for the last two hours: the 14-day median is 100 everywhere, the
    # last three steps and the last hour are both 50 above it.
    values = np.full(15 * DAY, 100.0)
    values[-24:] = 150.0
    made = bank_of(values)
    config = ModelConfig()
    damping = np.exp(-np.arange(1, 49) * 300 / config.damping_seconds)
    assert made["median14x5_adjusted"][0] == pytest.approx(np.full(48, 150.0))
    assert made["median14x5_adjusted_1h"][0] == pytest.approx(np.full(48, 150.0))
    assert made["median14x5_damped"][0] == pytest.approx(100.0 + 50.0 * damping)


def test_a_one_off_burst_yesterday_is_not_repeated() -> None:
    # Five steps of +1000 yesterday, at the time of forecast steps 10..14: at most 5 of the 70
    # values the median reads around each of those steps.
    values = np.full(15 * DAY, 100.0) + np.tile(np.linspace(0.0, 1.0, DAY), 15)
    end = values.size
    values[end - DAY + 10 : end - DAY + 15] += 1000.0
    made = bank_of(values)
    expected = values[end - DAY : end - DAY + 48].copy()
    expected[10:15] -= 1000.0
    for name in NAMES:
        assert np.max(np.abs(made[name][0] - expected)) < 0.02, name


def test_the_median_reads_only_the_history() -> None:
    rng = np.random.default_rng(5)
    values = 100 + 10 * rng.standard_normal(15 * DAY)
    end = 14 * DAY + 100
    cut = features.bank(values[None, :end], end, 300, ModelConfig())
    longer = features.bank(values[None, :], end, 300, ModelConfig())
    for name in NAMES:
        np.testing.assert_array_equal(cut[name], longer[name])


def test_a_model_without_them_does_not_compute_them() -> None:
    config = dataclasses.replace(
        ModelConfig(), candidates=tuple(c for c in ModelConfig().candidates if c not in NAMES)
    )
    made = bank_of(np.full(15 * DAY, 1.0), config)
    assert not set(NAMES) & set(made)
