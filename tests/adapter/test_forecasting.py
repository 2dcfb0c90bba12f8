"""Forecasting due targets in bounded batches, and judging the forecasts made last."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence

import numpy as np
import pytest

from adapter import load_config
from adapter.forecasting import SERIES_PER_CALL, forecast_each, track_error
from adapter.state import carry_over, signal_key
from forecaster import Forecast, Forecaster, load_forecaster
from forecaster.predictor import History
from tests.samples import WEB_TARGET

STEP = 300
END = 1_790_000_000 // STEP * STEP


@pytest.fixture(scope="module")
def model() -> Forecaster:
    return load_forecaster()


class Counting:
    """The real model, counting the series of each call."""

    def __init__(self, model: Forecaster) -> None:
        self.model = model
        self.batches: list[int] = []

    def forecast_batch(
        self, histories: Sequence[History], horizon: int, quantiles: Sequence[float]
    ) -> list[Forecast]:
        self.batches.append(len(histories))
        return self.model.forecast_batch(histories, horizon, quantiles)


def test_due_targets_are_forecast_a_bounded_batch_at_a_time(model: Forecaster) -> None:
    rng = np.random.default_rng(3)
    times = END - STEP * np.arange(3 * 288 - 1, -1, -1)
    daily = 1.5 + np.sin(2 * np.pi * (times % 86400) / 86400)
    count = 2 * SERIES_PER_CALL + 44
    requests = [
        [(times, level * daily * (1 + 0.05 * rng.standard_normal(times.size)))]
        for level in rng.uniform(1, 1000, count)
    ]
    counting = Counting(model)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        got = asyncio.run(forecast_each(counting, pool, requests, 12, (0.5, 0.9)))  # type: ignore[arg-type]
    assert counting.batches == [SERIES_PER_CALL, SERIES_PER_CALL, 44]
    whole = model.forecast_batch([request[0] for request in requests], 12, (0.5, 0.9))
    assert len(got) == count
    for result, one in zip(got, whole, strict=True):
        assert not isinstance(result, Exception)
        (forecast,) = result
        assert forecast.first_timestamp == one.first_timestamp == END + STEP
        # The same forecasts, up to the rounding of the network's matrix products (which
        # already varies with the size of a batch).
        np.testing.assert_allclose(forecast.values, one.values, rtol=1e-12, atol=0)


def test_the_realised_error_is_judged_against_the_median_made_for_that_step() -> None:
    config = load_config(WEB_TARGET, "test")
    (target,) = config.targets
    state = carry_over({}, config)[target.namespace, target.name]
    (signal,) = target.traffic
    history = state.histories[signal_key(signal)]

    def observe(end: int, value: float) -> None:
        stamps = np.arange(end - 9 * STEP, end + 1, STEP)
        history.merge(int(stamps[0]), end, [(stamps, np.full(stamps.size, value))])

    observe(END, 40.0)
    made = Forecast(
        (0.5, 0.9), np.array([[10.0, 20.0, 30.0], [15.0, 25.0, 35.0]]), "model", STEP, END + STEP
    )
    track_error(state, signal, made, 0)
    first, step, median = state.previous[signal.name]
    assert (first, step) == (END + STEP, STEP)
    assert list(median) == [10.0, 20.0, 30.0]
    assert median.base is None  # the median's own row, not a view holding every quantile
    assert state.status.forecast_error == {}  # nothing had been forecast for END
    observe(END + 2 * STEP, 25.0)  # the second step forecast (20) happened: 25
    later = Forecast((0.5, 0.9), np.ones((2, 3)), "model", STEP, END + 3 * STEP)
    track_error(state, signal, later, 0)
    assert state.status.actual_load[signal.name] == 25.0
    assert state.status.forecast_error[signal.name] == pytest.approx(0.2)  # |25 - 20| / 25
    observe(END + 7 * STEP, 50.0)  # beyond what was forecast: the error stands
    track_error(state, signal, later, 0)
    assert state.status.forecast_error[signal.name] == pytest.approx(0.2)
    assert state.status.actual_load[signal.name] == 50.0
