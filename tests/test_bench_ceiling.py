"""The ceiling benchmark's rows on series small enough to work out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bench import ceiling
from forecaster import backtest
from forecaster.config import ModelConfig
from forecaster.series import Series

START = 1_609_718_400
DAY = 288


def series_of(name: str, values: np.ndarray) -> Series:
    steps = np.arange(values.size, dtype=np.int64)
    return Series(name, START + 300 * steps, values.astype(np.float64))


def test_the_smoothed_future_averages_the_observed_neighbours() -> None:
    values = np.array([0.0, 1.0, 2.0, 3.0, 4.0, np.nan, 6.0])
    assert ceiling.smoothed_future(values, 2, 3, 1) == pytest.approx([2.0, 3.0, 3.5])
    assert ceiling.smoothed_future(values, 4, 3, 0)[1:2] == pytest.approx([np.nan], nan_ok=True)


def test_a_line_scores_the_last_value_exactly_and_the_unsmoothed_future_perfectly() -> None:
    # On a * t the last value misses the first h steps by (h + 1) / 2 a on average and the
    # daily seasonal naive by 288 a: a relative MASE of (h + 1) / 576 (see test_bench_forecast).
    # The future itself (half-width 0) is exact, floored as the protocol floors it.
    trace = series_of("line/a", 0.5 * np.arange(5 * DAY))
    measured = ceiling.measure(trace, ModelConfig(), widths=(0,))
    future = "the future, smoothed over +-0 steps"
    for h in backtest.HORIZONS:
        assert ceiling.relative([measured], "last", h) == pytest.approx((h + 1) / 576, rel=1e-12)
        assert ceiling.relative([measured], future, h) == pytest.approx(backtest.FLOOR)


def test_picking_after_the_fact_orders_the_rows() -> None:
    # Per series the hindsight pick equals the best single candidate; per forecast it is lower
    # still on a noisy series (a different candidate wins at different origins).
    rng = np.random.default_rng(3)
    steps = np.arange(6 * DAY)
    values = 100 + 30 * np.sin(2 * np.pi * steps / DAY) + 8 * rng.standard_normal(steps.size)
    config = ModelConfig()
    measured = ceiling.measure(series_of("noisy/a", values), config)
    for h in backtest.HORIZONS:
        singles = [ceiling.relative([measured], name, h) for name in config.candidates]
        per_series = ceiling.relative([measured], ceiling.PER_SERIES, h)
        per_forecast = ceiling.relative([measured], ceiling.PER_FORECAST, h)
        assert per_series == pytest.approx(min(singles), rel=1e-12)
        assert per_forecast < per_series


def test_the_table_puts_the_causal_rows_first_and_names_each_once() -> None:
    trace = series_of("line/a", 0.5 * np.arange(5 * DAY))
    config = ModelConfig()
    lines = ceiling.table([ceiling.measure(trace, config)], "pooled").splitlines()
    rows = [line[:44].strip() for line in lines[2:]]
    assert lines[0] == "pooled: 1 series"
    assert rows == [
        *config.candidates,
        ceiling.PER_SERIES,
        ceiling.PER_FORECAST,
        f"{ceiling.FUTURE} +-2 steps",
        f"{ceiling.FUTURE} +-6 steps",
    ]
