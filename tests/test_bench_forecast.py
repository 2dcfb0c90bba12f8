"""The forecast benchmark's scoring on series small enough to work out by hand.

Two parts: the accuracy protocol's horizons (`forecaster.backtest`: the short ones the scaling
policy uses, and the 1 h / 4 h figures pinned), and the lead-window maximum section
(`bench.forecast`) with fake batch forecasters in place of the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from adapter.backfill import median_peaks
from adapter.objective import lead_window_bounds
from bench import forecast
from forecaster import backtest
from forecaster.predictor import Forecast, History
from forecaster.series import Series

START = 1_609_718_400
DAY = 288


def series_of(name: str, values: np.ndarray) -> Series:
    steps = np.arange(values.size, dtype=np.int64)
    return Series(name, START + 300 * steps, values.astype(np.float64))


# --- the accuracy protocol's horizons ---------------------------------------------------


def last_value_method(
    times: np.ndarray, values: np.ndarray, horizon: int, quantiles: Sequence[float]
) -> np.ndarray:
    return np.tile(values[-1], (len(quantiles), horizon))


def test_short_horizons_are_scored_beside_the_hour_ones() -> None:
    # A straight line a * t: the daily seasonal naive misses every step by 288 a, the in-sample
    # scale is 288 a too, so its MASE is 1 at every horizon. The last value misses step k
    # (1-based) by k a: over the first h steps by (h + 1) / 2 a on average, a MASE of
    # (h + 1) / 576, and so is the relative MASE of the only series.
    trace = series_of("line/a", 0.5 * np.arange(5 * DAY))
    summary = backtest.evaluate("last", last_value_method, [trace])
    assert backtest.HORIZONS == (1, 2, 3, 12, 48)
    expected = {h: (h + 1) / 576 for h in backtest.HORIZONS}
    assert summary.relative_mase == pytest.approx(expected, rel=1e-12)
    assert summary.per_series[0].naive_mase == pytest.approx(dict.fromkeys(expected, 1.0))


def toy_trace() -> Series:
    rng = np.random.default_rng(7)
    length = 5 * DAY
    steps = np.arange(length)
    values = 100 + 20 * np.sin(2 * np.pi * steps / DAY) + 5 * rng.standard_normal(length)
    values[100:110] = np.nan  # in the context only
    values[length - 30 : length - 25] = np.nan  # in the last origins' actuals
    return series_of("toy/wave", values)


def toy_method(
    times: np.ndarray, values: np.ndarray, horizon: int, quantiles: Sequence[float]
) -> np.ndarray:
    centre = float(np.nanmean(values[-12:]))
    return np.array([[centre + (q - 0.5) * 40] * horizon for q in quantiles])


def test_the_hour_figures_are_those_before_the_short_horizons_came() -> None:
    # Figures of the protocol as it scored only 1 h and 4 h (commit 7142acf), for a fixed
    # method on a fixed noisy trace with gaps.
    summary = backtest.evaluate("toy", toy_method, [toy_trace()])
    score = summary.per_series[0]
    assert score.mase[12] == pytest.approx(0.911384401022671, rel=1e-12)
    assert score.mase[48] == pytest.approx(1.6704253438509271, rel=1e-12)
    assert score.naive_mase[12] == pytest.approx(0.9487714678622603, rel=1e-12)
    assert score.naive_mase[48] == pytest.approx(1.0110085821111916, rel=1e-12)
    assert summary.relative_mase[12] == pytest.approx(0.9605942335894349, rel=1e-12)
    assert summary.relative_mase[48] == pytest.approx(1.6522365619911348, rel=1e-12)
    assert score.wql == pytest.approx(0.05536805982549448, rel=1e-12)
    assert (score.exceed, score.observed, score.forecasts) == (118, 1670, 35)


def test_the_table_names_every_horizon() -> None:
    summary = backtest.evaluate("last", last_value_method, [series_of("line/a", np.arange(1440.0))])
    header, row = backtest.table([summary], 1).splitlines()[1:3]
    assert header.split()[2:11:2] == ["1h", "4h", "5m", "10m", "15m"]
    assert row.split()[1:6] == [f"{(h + 1) / 576:.3f}" for h in (12, 48, 1, 2, 3)]


def test_coverage_of_the_upper_quantile_is_counted_at_10_min_1_h_and_4_h() -> None:
    # A line rising by 1 a step; the forecast's 0.9 row is the last value + 1.5: it covers
    # step 1 (last + 1) and misses every later one (last + h, h >= 2).
    trace = series_of("line/b", np.arange(5.0 * DAY))

    def upper_is_last_plus(
        times: np.ndarray, values: np.ndarray, horizon: int, quantiles: Sequence[float]
    ) -> np.ndarray:
        return np.tile(values[-1] + 1.5 * np.array(quantiles)[:, None] / 0.9, (1, horizon))

    summary = backtest.evaluate("upper", upper_is_last_plus, [trace])
    assert backtest.COVERAGE_HORIZONS == (2, 12, 48)
    assert summary.coverage == {2: 0.0, 12: 0.0, 48: 0.0}
    noisy = toy_trace()
    scored = backtest.evaluate("toy", toy_method, [noisy]).per_series[0]
    origins = list(backtest.origins(len(noisy)))
    upper = {o: float(np.nanmean(noisy.values[o - 12 : o])) + 0.4 * 40 for o in origins}
    for h in (2, 12, 48):
        actual = {o: noisy.values[o + h - 1] for o in origins}
        seen = [o for o in origins if np.isfinite(actual[o])]
        assert scored.counted[h] == len(seen)
        assert scored.covered[h] == sum(actual[o] <= upper[o] for o in seen)


# --- the lead-window maximum ------------------------------------------------------------


class LastValueForecaster:
    """Median: the last value of the history, every step; the other quantiles: `scale` times
    it. Records the end and length of every history it is given."""

    def __init__(self, scale: float = 2.0) -> None:
        self.scale = scale
        self.seen: list[tuple[int, int]] = []

    def forecast_batch(
        self, histories: Sequence[History], horizon: int, quantiles: Sequence[float] = (0.5,)
    ) -> list[Forecast]:
        out = []
        for times, values in histories:
            self.seen.append((int(times[-1]), len(values)))
            last = float(values[-1])
            rows = [[last if q == 0.5 else self.scale * last] * horizon for q in quantiles]
            out.append(Forecast(tuple(quantiles), np.array(rows), "fake", 300, int(times[-1])))
        return out


def spiky(level: float, spikes: Sequence[int], days: int = 4) -> np.ndarray:
    """`level` everywhere, twice it at the given steps of the last day."""
    load = np.full(days * DAY, level)
    for spike in spikes:
        load[(days - 1) * DAY + spike] = 2 * level
    return load


@pytest.mark.parametrize("window", [2, 3])
def test_coverage_and_sharpness_on_isolated_spikes(window: int) -> None:
    # A flat load with isolated spikes to twice its level, and a model whose median is the last
    # value and whose 0.9 quantile is twice it. At step t the realised max exceeds the last
    # value where a spike falls within t .. t + W - 1 after a flat step: W steps per spike.
    # Over the calibration span (no spikes before the last day, few after) the 0.9 quantile of
    # the errors stays 0, for the model's median peaks (the last value) and the last value
    # alike, so both calibrated bounds are the last value; their losses tie and a tie goes to
    # the model. The model's own bound, twice the last value, is never below the max.
    steps = DAY - window + 1
    first = series_of("alpha/one", spiky(10.0, [20, 90, 160, 230]))
    second = series_of("beta/two", spiky(30.0, [100]))
    model = LastValueForecaster()
    scores = forecast.lead_window_scores(model, first, windows=(window,))
    scores += forecast.lead_window_scores(model, second, windows=(window,))
    one, two, pooled = forecast.lead_summaries(scores, window)

    assert [s.group for s in (one, two, pooled)] == ["alpha", "beta", "pooled"]
    assert (one.series, one.steps, pooled.series, pooled.steps) == (1, steps, 2, 2 * steps)
    for summary, spikes in ((one, 4), (two, 1), (pooled, 5)):
        missed = spikes * window / summary.steps
        assert summary.coverage == pytest.approx(
            {"model": 1.0, "calibrated": 1 - missed, "last value": 1 - missed}
        )
        assert summary.model_share == 1.0
    # mean(last value) / mean(realised max) = (n + k) / (n + k W) for k spikes over n steps.
    ratio = {k: (steps + k) / (steps + k * window) for k in (4, 1)}
    assert one.sharpness == pytest.approx(
        {"model": 2 * ratio[4], "calibrated": ratio[4], "last value": ratio[4]}
    )
    assert pooled.sharpness["last value"] == pytest.approx((ratio[4] + ratio[1]) / 2)
    assert pooled.fallbacks == 0


def test_a_bound_for_step_t_reads_the_load_up_to_t_minus_1_only() -> None:
    rng = np.random.default_rng(5)
    load = 50 + 10 * np.sin(2 * np.pi * np.arange(4 * DAY) / DAY) + rng.gamma(2, 3, 4 * DAY)
    trace = series_of("alpha/noisy", load)
    model = LastValueForecaster(scale=1.3)
    scores = forecast.lead_window_scores(model, trace)
    # Every history ends before the origin it was made at, and holds at most 14 days.
    origins = forecast.lead_origins(load.size, forecast.LEAD_WINDOWS)
    expected = sorted(
        (int(trace.timestamps[o - 1]), min(int(o), forecast.LEAD_HISTORY)) for o in origins
    )
    assert sorted(model.seen) == expected
    # The model's own bound at t is 1.3 x load[t - 1]: made from a history ending at t - 1.
    for score in scores:
        assert score.bounds["model"] == pytest.approx(1.3 * load[score.steps - 1])

    # Changing the load from step k on leaves every bound at steps up to k as it was.
    k = load.size - DAY // 2
    changed = load.copy()
    changed[k:] = rng.uniform(0, 500, load.size - k)
    again = forecast.lead_window_scores(
        LastValueForecaster(scale=1.3), series_of("alpha/noisy", changed)
    )
    for before, after in zip(scores, again, strict=True):
        kept = before.steps <= k
        for kind in forecast.BOUND_KINDS:
            assert np.array_equal(before.bounds[kind][kept], after.bounds[kind][kept])
            assert not np.array_equal(before.bounds[kind][~kept], after.bounds[kind][~kept])


class RampForecaster:
    """Median: the last value plus 3 per step ahead; 0.9: plus 7 per step ahead."""

    def forecast_batch(
        self, histories: Sequence[History], horizon: int, quantiles: Sequence[float] = (0.5,)
    ) -> list[Forecast]:
        ahead = np.arange(1, horizon + 1)
        return [
            Forecast(
                tuple(quantiles),
                np.array([values[-1] + (3 if q == 0.5 else 7) * ahead for q in quantiles]),
                "fake",
                300,
                int(times[-1]) + 300,
            )
            for times, values in histories
        ]


@pytest.mark.parametrize("window", [2, 3])
def test_the_calibrated_bound_is_lead_window_bounds_on_backfilled_median_peaks(
    window: int,
) -> None:
    # One forecast call serves both windows; the median peaks it hands on must be what
    # adapter.backfill.median_peaks makes for that window alone.
    rng = np.random.default_rng(11)
    load = rng.gamma(3, 10, 4 * DAY)
    trace = series_of("alpha/gamma", load)
    (score,) = [
        s for s in forecast.lead_window_scores(RampForecaster(), trace) if s.window == window
    ]
    origins = forecast.lead_origins(load.size, forecast.LEAD_WINDOWS)
    peaks = np.full(load.size, np.nan)
    peaks[origins] = median_peaks(
        RampForecaster(), trace.timestamps, load, origins, forecast.LEAD_HISTORY, window
    )
    expected = lead_window_bounds(load, peaks, score.steps, window, quantiles=(0.9,))
    assert np.array_equal(score.bounds["calibrated"], expected.at(0.9))
    assert score.model_share == expected.model_share[0]
    assert score.bounds["model"] == pytest.approx(load[score.steps - 1] + 7 * window)
    assert score.steps.tolist() == list(range(3 * DAY, 4 * DAY - window + 1))


def test_spread_takes_series_evenly_from_first_to_last() -> None:
    traces = [series_of(f"s/{i:02d}", np.ones(3)) for i in range(10)]
    assert [t.name for t in forecast.spread(traces, 4)] == ["s/00", "s/03", "s/06", "s/09"]
    assert forecast.spread(traces, 0) == []
    assert len(forecast.spread(traces, 50)) == 10


# --- leave one source out -----------------------------------------------------------------


def test_each_trace_is_forecast_by_its_own_sources_method_and_reported_per_source() -> None:
    line = 0.5 * np.arange(5 * DAY)
    traces = [series_of("a/one", line), series_of("a/two", 2 * line), series_of("b/one", line)]
    asked: list[str] = []

    def method_for(trace: Series) -> backtest.Method:
        asked.append(trace.name)
        if backtest.source_of(trace.name) == "a":
            return last_value_method
        return toy_method

    summary = backtest.evaluate_each("model", method_for, traces)
    assert asked == ["a/one", "a/two", "b/one"]
    by_source = backtest.by_source([summary, backtest.evaluate("last", last_value_method, traces)])
    assert list(by_source) == ["a", "b"]
    held_a, last_a = by_source["a"]
    assert [s.name for s in held_a.per_series] == ["a/one", "a/two"]
    # Source a was forecast by the last value: the same figures as the last-value row.
    assert held_a.relative_mase == pytest.approx(last_a.relative_mase)
    held_b, last_b = by_source["b"]
    assert held_b.relative_mase != pytest.approx(last_b.relative_mase)


def test_a_missing_held_out_model_is_named(tmp_path: Path) -> None:
    traces = [series_of("a/one", np.ones(10)), series_of("b/one", np.ones(10))]
    (tmp_path / "a").mkdir()
    with pytest.raises(SystemExit, match="no model folder for b"):
        forecast.held_out_models(tmp_path, traces)
