"""The statistical anchors: shapes, quantile order, exactness on easy series, gaps, fallbacks.

The statsmodels, statsforecast and Fracast-0 anchors are skipped only when their library is
missing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from forecaster.anchors import (
    ANCHORS,
    Anchor,
    AnchorUnavailable,
    holt_winters,
    last_value,
    mstl_autoets,
    seasonal_naive,
)

STEP = 300  # 5-minute grid
DAY = 288  # points per day at STEP
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)  # within the levels Fracast-0 forecasts
LIBRARY = {"holt-winters": "statsmodels", "mstl-autoets": "statsforecast", "fracast-0": "fracast"}


def daily_sine(
    days: float, amplitude: float = 40.0, noise: float = 3.0, seed: int = 0
) -> np.ndarray:
    """A level plus a strong daily sine plus noise; the point after the last starts a cycle."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(days * DAY))
    return 100.0 + amplitude * np.sin(2 * np.pi * t / DAY) + rng.normal(0.0, noise, t.size)


def available(name: str) -> Anchor:
    if name in LIBRARY:
        pytest.importorskip(LIBRARY[name])
    return ANCHORS[name]


@pytest.fixture(params=sorted(ANCHORS))
def anchor(request: pytest.FixtureRequest) -> Anchor:
    return available(request.param)


def test_anchor_names() -> None:
    assert set(ANCHORS) == {
        "last-value",
        "seasonal-naive",
        "holt-winters",
        "mstl-autoets",
        "fracast-0",
    }


def test_shape_dtype_and_quantile_order(anchor: Anchor) -> None:
    context = daily_sine(3)
    out = anchor(context, STEP, 48, QUANTILES)
    assert out.shape == (len(QUANTILES), 48)
    assert out.dtype == np.float64
    assert np.all(np.isfinite(out))
    assert np.all(np.diff(out, axis=0) >= 0)
    assert np.all(out[-1] > out[0])  # a noisy series gets a real spread
    median_only = anchor(context, STEP, 48, [0.5])
    np.testing.assert_allclose(median_only[0], out[2])


def test_unsorted_quantile_levels_keep_their_rows(anchor: Anchor) -> None:
    context = daily_sine(3, seed=1)
    ordered = anchor(context, STEP, 24, (0.1, 0.5, 0.9))
    shuffled = anchor(context, STEP, 24, (0.9, 0.1, 0.5))
    np.testing.assert_allclose(shuffled, ordered[[2, 0, 1]])


def test_seasonal_naive_reproduces_a_periodic_series_exactly() -> None:
    pattern = np.random.default_rng(2).uniform(0.0, 100.0, DAY)
    context = np.tile(pattern, 4)[5:]  # does not start at the top of a day
    horizon = 2 * DAY + 17  # more than two days ahead
    out = seasonal_naive(context, STEP, horizon, QUANTILES)
    expected = np.tile(pattern, 3)[:horizon]
    for row in out:
        np.testing.assert_array_equal(row, expected)


def test_seasonal_naive_takes_the_value_one_day_earlier() -> None:
    context = daily_sine(3, seed=3)
    out = seasonal_naive(context, STEP, 2 * DAY, [0.5])
    np.testing.assert_array_equal(out[0, :DAY], context[-DAY:])
    np.testing.assert_array_equal(out[0, DAY:], context[-DAY:])


def test_last_value_on_a_constant_series_is_that_constant() -> None:
    out = last_value(np.full(500, 7.25), STEP, 48, QUANTILES)
    np.testing.assert_array_equal(out, np.full((len(QUANTILES), 48), 7.25))


def test_last_value_carries_the_last_observation_over_a_trailing_gap() -> None:
    context = daily_sine(1, seed=4)
    context[-3:] = np.nan
    out = last_value(context, STEP, 12, (0.1, 0.5, 0.9))
    np.testing.assert_array_equal(out[1], np.full(12, context[-4]))
    assert np.all(out[2] > out[0])


@pytest.mark.parametrize("name", ["holt-winters", "mstl-autoets", "fracast-0"])
@pytest.mark.parametrize("days", [5, 14])
def test_seasonal_models_beat_last_value_on_a_daily_pattern(name: str, days: int) -> None:
    """MAE over 48 steps from four origins a quarter-day apart (rising, peak, falling, trough).

    A seasonal model lands near the noise (MAE ~2.5 here, last value ~13); the same models
    without their season only get to ~0.6 of last value's MAE, which the bound rejects.
    """
    model = available(name)
    series = daily_sine(days + 1, seed=days)
    model_errors, baseline_errors = [], []
    for origin in range(days * DAY, days * DAY - DAY, -DAY // 4):
        context, future = series[:origin], series[origin : origin + 48]
        model_errors.append(np.mean(np.abs(model(context, STEP, 48, [0.5])[0] - future)))
        baseline = last_value(context, STEP, 48, [0.5])[0]
        baseline_errors.append(np.mean(np.abs(baseline - future)))
    mae, baseline_mae = np.mean(model_errors), np.mean(baseline_errors)
    assert mae < 0.35 * baseline_mae, (mae, baseline_mae)


def test_gaps_give_finite_output(anchor: Anchor) -> None:
    context = daily_sine(4, seed=5)
    context[:30] = np.nan  # the series started late
    context[DAY : DAY + 36] = np.nan  # a three-hour outage
    context[2 * DAY : 3 * DAY : 17] = np.nan  # scattered misses
    context[2 * DAY + 1] = np.inf
    context[-5:] = np.nan  # the latest scrapes are missing
    out = anchor(context, STEP, 48, QUANTILES)
    assert out.shape == (len(QUANTILES), 48)
    assert np.all(np.isfinite(out))
    assert np.all(np.diff(out, axis=0) >= 0)


@pytest.mark.parametrize("length", [1, 5, 100, DAY + 10])
def test_short_context_does_not_raise(anchor: Anchor, length: int) -> None:
    context = daily_sine(2, seed=6)[-length:]
    out = anchor(context, STEP, 48, QUANTILES)
    assert out.shape == (len(QUANTILES), 48)
    assert np.all(np.isfinite(out))
    assert np.all(np.diff(out, axis=0) >= 0)


def test_seasonal_naive_falls_back_to_last_value_below_two_days() -> None:
    context = daily_sine(1.5, seed=7)
    np.testing.assert_array_equal(
        seasonal_naive(context, STEP, 48, QUANTILES), last_value(context, STEP, 48, QUANTILES)
    )


@pytest.mark.parametrize(
    ("context", "horizon", "quantiles", "message"),
    [
        (np.full(50, np.nan), 12, (0.5,), "no finite value"),
        (np.arange(50.0), 0, (0.5,), "horizon"),
        (np.arange(50.0), 12, (0.0, 0.5), "strictly between 0 and 1"),
        (np.arange(50.0), 12, (), "non-empty"),
        (np.ones((2, 50)), 12, (0.5,), "1-D"),
    ],
    ids=["all-missing", "no-horizon", "level-zero", "no-levels", "two-dimensional"],
)
def test_invalid_requests_raise_value_error(
    context: np.ndarray, horizon: int, quantiles: tuple[float, ...], message: str
) -> None:
    for anchor in ANCHORS.values():
        with pytest.raises(ValueError, match=message):
            anchor(context, STEP, horizon, quantiles)


@pytest.mark.parametrize(
    ("anchor", "modules"),
    [
        (holt_winters, ["statsmodels", "statsmodels.tsa.exponential_smoothing.ets"]),
        (mstl_autoets, ["statsforecast", "statsforecast.models"]),
    ],
)
def test_missing_library_raises_anchor_unavailable(
    anchor: Anchor, modules: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(
        AnchorUnavailable, match=r"pip install 'predictive-metrics-adapter\[bench\]'"
    ):
        anchor(daily_sine(3), STEP, 12, (0.5,))
    assert issubclass(AnchorUnavailable, ImportError)


def test_importing_the_module_leaves_the_optional_libraries_alone() -> None:
    code = (
        "import sys, forecaster.anchors\n"
        "loaded = sorted(m for m in ('statsmodels', 'statsforecast') if m in sys.modules)\n"
        "print(','.join(loaded) or 'none')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "none"


def test_fracast_refuses_a_level_it_does_not_forecast() -> None:
    fracast = available("fracast-0")
    with pytest.raises(ValueError, match="not 0.05, 0.95"):
        fracast(daily_sine(3), STEP, 12, (0.05, 0.5, 0.95))
    # Between two of its levels: between their forecasts.
    out = fracast(daily_sine(3), STEP, 12, (0.2, 0.25, 0.3))
    assert np.all(out[0] <= out[1])
    assert np.all(out[1] <= out[2])
