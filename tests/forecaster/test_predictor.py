"""The public API on the pretrained default: shapes, ordering, robustness, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster import Forecaster, InsufficientHistory, InvalidSeries, load_forecaster

STEP = 300
DAY = 288


@pytest.fixture(scope="module")
def forecaster() -> Forecaster:
    return load_forecaster()


def daily(
    days: float, step: int = STEP, level: float = 100.0, noise: float = 0.02, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A workload with a daily cycle, on a grid ending at a fixed time."""
    rng = np.random.default_rng(seed)
    length = int(days * 86400 / step)
    times = 1_790_000_000 - (1_790_000_000 % step) + np.arange(length, dtype=np.int64) * step
    phase = 2 * np.pi * (times % 86400) / 86400
    values = level * (1.5 + np.sin(phase)) * (1 + noise * rng.standard_normal(length))
    return times, values


def test_shapes_and_ordering(forecaster: Forecaster) -> None:
    times, values = daily(14)
    out = forecaster.predict(times, values, 48)
    assert out.shape == (3, 48)
    assert np.all(np.isfinite(out))
    assert np.all(np.diff(out, axis=0) >= 0)
    many = forecaster.predict(times, values, 12, quantiles=(0.05, 0.2, 0.5, 0.8, 0.95))
    assert many.shape == (5, 12)
    assert np.all(np.diff(many, axis=0) >= 0)
    assert np.allclose(many[2], out[1, :12])


def test_follows_the_daily_cycle(forecaster: Forecaster) -> None:
    times, values = daily(10, noise=0.01)
    future = times[-1] + STEP * np.arange(1, 49)
    truth = 100 * (1.5 + np.sin(2 * np.pi * (future % 86400) / 86400))
    median = forecaster.predict(times, values, 48)[1]
    assert np.mean(np.abs(median - truth)) < 0.05 * np.mean(truth)


def test_batch_matches_single_calls(forecaster: Forecaster) -> None:
    histories = [daily(days, seed=seed) for seed, days in enumerate((14, 9, 3, 1.5, 0.5))]
    batch = forecaster.predict_batch(histories, 24)
    assert batch.shape == (5, 3, 24)
    for row, (times, values) in enumerate(histories):
        assert np.allclose(batch[row], forecaster.predict(times, values, 24))


def test_short_history_falls_back_and_says_so(forecaster: Forecaster) -> None:
    assert forecaster.forecast(*daily(14), 48).method == "model"
    assert forecaster.forecast(*daily(1.5), 48).method == "seasonal-naive-adjusted"
    short = forecaster.forecast(*daily(0.25), 48)
    assert short.method == "naive"
    assert np.all(np.isfinite(short.values))
    assert np.all(np.diff(short.values, axis=0) >= 0)


def test_nan_gaps_give_finite_forecasts(forecaster: Forecaster) -> None:
    times, values = daily(14)
    values[-30:-5] = np.nan  # a gap just before now
    values[100:2000] = np.nan  # and a long one in the past
    values[-1] = np.nan  # the very last scrape failed
    out = forecaster.predict(times, values, 48)
    assert np.all(np.isfinite(out))
    assert 40 < out[1].mean() < 260


@pytest.mark.parametrize("constant", [0.0, 5.0, 1e12])
def test_constant_series_are_forecast_flat(forecaster: Forecaster, constant: float) -> None:
    times = np.arange(14 * DAY, dtype=np.int64) * STEP
    out = forecaster.predict(times, np.full(len(times), constant), 48)
    assert np.allclose(out, constant, rtol=1e-6, atol=1e-9)


def test_scale_free(forecaster: Forecaster) -> None:
    times, values = daily(14)
    small = forecaster.predict(times, values * 1e-6, 48)
    large = forecaster.predict(times, values * 1e9, 48)
    assert np.allclose(small * 1e15, large, rtol=1e-4)


@pytest.mark.parametrize("days", [14, 1.5, 0.25], ids=["model", "seasonal", "naive"])
def test_never_negative_for_non_negative_history(forecaster: Forecaster, days: float) -> None:
    times, values = daily(days)
    values = np.where(values < 80, 0.0, values)  # idle half the day
    assert forecaster.predict(times, values, 48).min() >= 0


@pytest.mark.parametrize("days", [14, 1.5, 0.25], ids=["model", "seasonal", "naive"])
def test_rows_follow_the_requested_quantiles_in_any_order(
    forecaster: Forecaster, days: float
) -> None:
    times, values = daily(days)
    ascending = forecaster.predict(times, values, 48, (0.1, 0.5, 0.9))
    shuffled = forecaster.predict(times, values, 48, (0.9, 0.1, 0.5))
    assert np.array_equal(shuffled, ascending[[2, 0, 1]])


def test_spikes_and_level_shifts_stay_bounded(forecaster: Forecaster) -> None:
    times, values = daily(14, noise=0.0)
    values[-2000] *= 1000  # one absurd spike, a week ago
    values[-36:] *= 3  # traffic tripled three hours ago
    out = forecaster.predict(times, values, 48)
    assert np.all(np.isfinite(out))
    future = times[-1] + STEP * np.arange(1, 7)
    before = 100 * (1.5 + np.sin(2 * np.pi * (future % 86400) / 86400))
    # Follows the new level: much nearer three times the old cycle than the old cycle itself
    # (the level is adjusted additively, so a multiplicative jump is tracked, not matched).
    assert np.all(out[1, :6] > 2.3 * before)
    assert np.all(out[1, :6] < 3.3 * before)
    assert out[2].max() < 10 * values[-36:].max()  # the spike does not blow the band up


@pytest.mark.parametrize("step", [60, 900, 3600])
def test_other_steps(forecaster: Forecaster, step: int) -> None:
    times, values = daily(10, step=step)
    out = forecaster.predict(times, values, 48)
    assert np.all(np.isfinite(out))
    assert np.all(np.diff(out, axis=0) >= 0)


def test_bad_input_is_a_clear_error(forecaster: Forecaster) -> None:
    times, values = daily(3)
    with pytest.raises(InvalidSeries, match="evenly spaced"):
        forecaster.predict(np.r_[times[:-1], times[-1] + 7], values, 12)
    with pytest.raises(InvalidSeries, match="timestamps but"):
        forecaster.predict(times, values[:-1], 12)
    with pytest.raises(InsufficientHistory):
        forecaster.predict(times, np.full(len(times), np.nan), 12)
    with pytest.raises(ValueError, match="horizon must be 1..48"):
        forecaster.predict(times, values, 49)
    with pytest.raises(ValueError, match="quantiles must lie in"):
        forecaster.predict(times, values, 12, quantiles=(0.5, 0.99))
    with pytest.raises(InvalidSeries, match="finite"):
        forecaster.predict(times, np.r_[values[:-1], np.inf], 12)


def test_a_large_batch_is_computed_a_bounded_number_of_series_at_a_time(
    forecaster: Forecaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The features of a batch are built `ROWS_PER_CALL` series at a time (their memory stays
    bounded), with the forecasts of one whole batch."""
    from forecaster import features, predictor

    histories = [daily(3, level=level, seed=seed) for seed, level in enumerate(range(1, 301))]
    rows: list[int] = []
    build = features.build

    def counted(values: np.ndarray, *args: object, **kwargs: object) -> object:
        rows.append(len(values))
        return build(values, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(features, "build", counted)
    chunked = forecaster.predict_batch(histories, 48)
    assert rows == [predictor.ROWS_PER_CALL] * 2 + [300 - 2 * predictor.ROWS_PER_CALL]
    monkeypatch.setattr(predictor, "ROWS_PER_CALL", len(histories))
    rows.clear()
    whole = forecaster.predict_batch(histories, 48)
    assert rows == [300]
    # Up to the rounding of the network's matrix products, which varies with a batch's size.
    np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=0)
