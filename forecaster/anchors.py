"""Statistical anchor forecasters: the baselines a benchmark scores the model against.

Every anchor has the same signature, `anchor(context, step_seconds, horizon, quantiles)`, and
returns a float64 array of shape `(len(quantiles), horizon)`: row `i` is the forecast of the
`quantiles[i]` quantile for the `horizon` grid steps that follow the last element of `context`.

- `last_value`: the most recent observation, repeated.
- `seasonal_naive`: the value exactly one whole day (or several whole days) before each step.
- `holt_winters`: statsmodels ETS(A,Ad,A), i.e. damped additive Holt-Winters with a daily season,
  fitted on the trailing `HOLT_WINTERS_WINDOW_DAYS` days of the context.
- `mstl_autoets`: statsforecast MSTL (daily season, plus a weekly one when the context holds two
  weeks) with an additive-error AutoETS forecasting the seasonally adjusted series.
- `fracast_zero`: Fracast-0, a pretrained foundation model, zero-shot; the loaded model is held
  by `forecaster.pretrained` (this module holds none).

Shared rules:

- Missing values (NaN, +-inf) are imputed before anything is fitted: leading missing values are
  dropped (the history starts at its first observation), interior gaps are interpolated linearly
  and trailing ones carry the last observation forward. A context with no finite value is an
  error (`ValueError`); no anchor ever returns NaN.
- The daily period is `P = round(86400 / step_seconds)`. Seasonality needs `P >= 2` and at least
  two days (`2 * P` points after dropping leading gaps); on a shorter context `seasonal_naive`
  returns `last_value`'s forecast, and the two model anchors fit their non-seasonal part alone
  (`holt_winters`: ETS(A,Ad,N), damped Holt; `mstl_autoets`: AutoETS without MSTL). With fewer
  than `MIN_MODEL_POINTS` points, or a constant context, they return `last_value`'s forecast.
- The median is the point forecast. `last_value` and `seasonal_naive` spread the other
  quantiles with empirical quantiles of their own in-sample errors at the same lag, centred on
  the errors' median; lags with fewer than `MIN_EMPIRICAL_ERRORS` errors reuse the spread of the
  longest lag that has enough, scaled by the square root of the lag ratio. The model anchors
  turn the model's own 80% prediction interval into a normal spread per step. Rows are sorted
  so that, at every step, a higher quantile level never gets a lower value.
- A model fit whose forecast is not finite is replaced by `seasonal_naive`'s forecast.

statsmodels and statsforecast are optional (the `bench` extra): they are imported inside the
functions that use them, and `AnchorUnavailable` says how to install them when they are missing.
Their own warnings (convergence and numerical ones) are silenced around the fit only; this uses
`warnings.catch_warnings`, which is not thread-safe, so call the model anchors from one thread.

This module must not import statsmodels, statsforecast or pandas at import time, nor torch, nor
anything of `adapter` or `apiservice`; it does no I/O, no networking and holds no state.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Anchor = Callable[[FloatArray, int, int, Sequence[float]], FloatArray]

SECONDS_PER_DAY = 86_400
MIN_SEASONAL_DAYS = 2
"""Seasonal methods need this many whole days of context; shorter contexts fall back."""
WEEKLY_SEASON_DAYS = 14
"""`mstl_autoets` adds the weekly season when the context holds this many days."""
HOLT_WINTERS_WINDOW_DAYS = 7
"""`holt_winters` fits on this many trailing days: about half the CPU of a 14-day fit."""
MIN_MODEL_POINTS = 10
"""Fewer points than this and the model anchors return `last_value`'s forecast."""
MIN_EMPIRICAL_ERRORS = 30
"""In-sample errors a lag needs for its own empirical quantiles."""
INTERVAL_LEVEL = 80
"""The model prediction interval (percent) that is turned into a normal spread."""

_INSTALL_HINT = "pip install 'predictive-metrics-adapter[bench]'"
_STANDARD_NORMAL = NormalDist()


class AnchorUnavailable(ImportError):
    """An anchor needs an optional library (the `bench` extra) that is not installed."""


@dataclass(frozen=True)
class _Context:
    """A validated, imputed history and the request it comes with."""

    observed: FloatArray  # the history from its first observation on, NaN where missing
    filled: FloatArray  # `observed` with every gap imputed
    period: int  # points per day
    horizon: int
    levels: FloatArray  # quantile levels, in the caller's order

    @property
    def seasonal(self) -> bool:
        return self.period >= 2 and self.filled.size >= MIN_SEASONAL_DAYS * self.period

    @property
    def constant(self) -> bool:
        return bool(np.ptp(self.filled) == 0.0)


def _prepare(
    context: FloatArray, step_seconds: int, horizon: int, quantiles: Sequence[float]
) -> _Context:
    values = np.asarray(context, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"context must be 1-D, got shape {values.shape}")
    if step_seconds <= 0:
        raise ValueError(f"step_seconds must be positive, got {step_seconds}")
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    levels = np.asarray(quantiles, dtype=np.float64)
    if levels.ndim != 1 or levels.size == 0:
        raise ValueError("quantiles must be a non-empty sequence of levels")
    if not np.all((levels > 0.0) & (levels < 1.0)):
        raise ValueError(f"quantile levels must lie strictly between 0 and 1, got {quantiles}")
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError("context holds no finite value to forecast from")
    first = int(np.argmax(finite))
    observed = np.where(finite, values, np.nan)[first:]
    known = np.flatnonzero(finite[first:])
    positions = np.arange(observed.size)
    filled = np.interp(positions, known, observed[known])  # edges take the nearest value
    return _Context(
        observed=observed,
        filled=filled,
        period=round(SECONDS_PER_DAY / step_seconds),
        horizon=horizon,
        levels=levels,
    )


def _assemble(ctx: _Context, point: FloatArray, offsets: FloatArray) -> FloatArray:
    """Point forecast plus per-level offsets, made non-decreasing in the quantile level."""
    values = point[np.newaxis, :] + offsets
    order = np.argsort(ctx.levels, kind="stable")
    result = np.empty_like(values)
    result[order] = np.sort(values[order], axis=0)
    return result


def _empirical_offsets(ctx: _Context, lags: npt.NDArray[np.int64]) -> FloatArray:
    """Per-step offsets from the quantiles of in-sample errors `y[s] - y[s - lag]`.

    Errors are taken where both ends were observed; if no such pair exists at the shortest
    lag, the imputed series is used instead. Lags with too few errors reuse the spread of the
    longest lag that has enough, scaled by `sqrt(lag / that_lag)` (random-walk growth).
    """
    unique_lags = [int(lag) for lag in np.unique(lags)]

    def errors_at(series: FloatArray, lag: int) -> FloatArray:
        if lag >= series.size:
            return np.empty(0)
        errors = series[lag:] - series[: series.size - lag]
        return errors[np.isfinite(errors)]

    series = ctx.observed
    if errors_at(series, unique_lags[0]).size == 0:
        series = ctx.filled
    needed = min(MIN_EMPIRICAL_ERRORS, errors_at(series, unique_lags[0]).size)
    by_lag: dict[int, FloatArray] = {}
    reference: tuple[int, FloatArray] | None = None
    for lag in unique_lags:
        errors = errors_at(series, lag)
        if errors.size >= needed and errors.size > 0:
            spread = np.quantile(errors, ctx.levels) - np.median(errors)
            reference = (lag, spread)
        elif reference is not None:
            spread = reference[1] * math.sqrt(lag / reference[0])
        else:
            spread = np.zeros(ctx.levels.size)
        by_lag[lag] = spread
    return np.stack([by_lag[int(lag)] for lag in lags], axis=1)


def _normal_offsets(ctx: _Context, lower: FloatArray, upper: FloatArray) -> FloatArray:
    """Per-step offsets of a normal distribution whose central interval is `[lower, upper]`."""
    z_interval = _STANDARD_NORMAL.inv_cdf(0.5 + INTERVAL_LEVEL / 200.0)
    sigma = np.maximum((upper - lower) / (2.0 * z_interval), 0.0)
    z = np.array([0.0 if q == 0.5 else _STANDARD_NORMAL.inv_cdf(q) for q in ctx.levels])
    return z[:, np.newaxis] * sigma[np.newaxis, :]


def _last_value(ctx: _Context) -> FloatArray:
    steps = np.arange(1, ctx.horizon + 1, dtype=np.int64)
    point = np.full(ctx.horizon, ctx.filled[-1])
    return _assemble(ctx, point, _empirical_offsets(ctx, steps))


def _seasonal_naive(ctx: _Context) -> FloatArray:
    if not ctx.seasonal:
        return _last_value(ctx)
    steps = np.arange(1, ctx.horizon + 1, dtype=np.int64)
    lags = ctx.period * ((steps + ctx.period - 1) // ctx.period)  # whole days back
    point = ctx.filled[ctx.filled.size - 1 + steps - lags]
    return _assemble(ctx, point, _empirical_offsets(ctx, lags))


def _model_result(
    ctx: _Context, mean: FloatArray, lower: FloatArray, upper: FloatArray
) -> FloatArray:
    result = _assemble(ctx, mean, _normal_offsets(ctx, lower, upper))
    if not np.all(np.isfinite(result)):
        return _seasonal_naive(ctx)
    return result


def last_value(
    context: FloatArray, step_seconds: int, horizon: int, quantiles: Sequence[float]
) -> FloatArray:
    """Repeat the most recent observation; spread from in-sample h-step differences."""
    return _last_value(_prepare(context, step_seconds, horizon, quantiles))


def seasonal_naive(
    context: FloatArray, step_seconds: int, horizon: int, quantiles: Sequence[float]
) -> FloatArray:
    """Step `h` gets the value `ceil(h / P)` whole days earlier, so `context[h - 1 - P]` for
    `h <= P`. The spread comes from in-sample differences at that lag (one per number of days
    back). Contexts shorter than two days get `last_value`'s forecast.
    """
    return _seasonal_naive(_prepare(context, step_seconds, horizon, quantiles))


def holt_winters(
    context: FloatArray, step_seconds: int, horizon: int, quantiles: Sequence[float]
) -> FloatArray:
    """Damped additive Holt-Winters, ETS(A,Ad,A) with a daily season, from statsmodels.

    Fitted by maximum likelihood with heuristic initial states on the trailing
    `HOLT_WINTERS_WINDOW_DAYS` days only (estimating all `P` initial seasonal states would
    be far too slow at 5-minute steps). The spread comes from the model's exact prediction
    intervals. Below two days of context (or when the heuristic initialisation needs more
    points than that) the season is dropped: ETS(A,Ad,N).
    """
    ctx = _prepare(context, step_seconds, horizon, quantiles)
    if ctx.constant or ctx.filled.size < MIN_MODEL_POINTS:
        return _last_value(ctx)
    ets_model, pandas = _load_statsmodels()
    period = ctx.period
    seasonal = ctx.seasonal and ctx.filled.size >= 10 + 2 * (period // 2)
    history = ctx.filled[-HOLT_WINTERS_WINDOW_DAYS * period :] if seasonal else ctx.filled
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ets_model(
            # A pandas Series: get_prediction fails on plain arrays in statsmodels 0.15.
            pandas.Series(history),
            error="add",
            trend="add",
            damped_trend=True,
            seasonal="add" if seasonal else None,
            seasonal_periods=period if seasonal else None,
            initialization_method="heuristic",
        )
        fit = model.fit(disp=False)
        prediction = fit.get_prediction(start=history.size, end=history.size + horizon - 1)
        frame = prediction.summary_frame(alpha=1.0 - INTERVAL_LEVEL / 100.0)
    return _model_result(
        ctx,
        np.asarray(frame["mean"], dtype=np.float64),
        np.asarray(frame["pi_lower"], dtype=np.float64),
        np.asarray(frame["pi_upper"], dtype=np.float64),
    )


def mstl_autoets(
    context: FloatArray, step_seconds: int, horizon: int, quantiles: Sequence[float]
) -> FloatArray:
    """statsforecast MSTL with an additive-error AutoETS (`model="AZN"`) trend forecaster.

    Seasons: `[P, 7 * P]` when the context holds two weeks, else `[P]`; the whole context is
    used. STL's LOESS smoothers are evaluated every fifth of the daily trend and low-pass
    windows and interpolated in between (R's `stl` uses a tenth; statsmodels defaults to every
    point, which costs ~9 s per call on 14 days of 5-minute data). AutoETS is restricted to
    additive errors because the seasonally adjusted series it models is additive and may be
    negative; this also halves its cost. The spread comes from the model's 80% interval.
    Below two days of context: AutoETS alone on the series.
    """
    ctx = _prepare(context, step_seconds, horizon, quantiles)
    if ctx.constant or ctx.filled.size < MIN_MODEL_POINTS:
        return _last_value(ctx)
    mstl, auto_ets = _load_statsforecast()
    period = ctx.period
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trend_model = auto_ets(model="AZN")
        model: Any = trend_model
        if ctx.seasonal:
            weekly = ctx.filled.size >= WEEKLY_SEASON_DAYS * period
            model = mstl(
                season_length=[period, 7 * period] if weekly else [period],
                trend_forecaster=trend_model,
                stl_kwargs=_stl_jumps(period),
            )
        output = model.forecast(y=ctx.filled, h=horizon, level=[INTERVAL_LEVEL])
    return _model_result(
        ctx,
        np.asarray(output["mean"], dtype=np.float64),
        np.asarray(output[f"lo-{INTERVAL_LEVEL}"], dtype=np.float64),
        np.asarray(output[f"hi-{INTERVAL_LEVEL}"], dtype=np.float64),
    )


def _stl_jumps(period: int) -> dict[str, int]:
    """STL interpolation steps: a fifth of statsmodels' default daily smoother windows.

    The defaults are the smallest odd integers above `1.5 P / (1 - 1.5 / 11)` (trend; 11 is
    MSTL's seasonal window for the first season) and above `P` (low-pass). MSTL passes one set
    of keyword arguments to every season's STL, so the weekly STL gets the same steps.
    """
    trend_window = _odd_above(1.5 * period / (1.0 - 1.5 / 11.0))
    low_pass_window = _odd_above(period)
    return {
        "trend_jump": math.ceil(trend_window / 5),
        "low_pass_jump": math.ceil(low_pass_window / 5),
    }


def _odd_above(value: float) -> int:
    whole = math.floor(value) + 1
    return whole if whole % 2 else whole + 1


def _load_statsmodels() -> tuple[Any, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pandas
            from statsmodels.tsa.exponential_smoothing.ets import ETSModel
    except ImportError as error:
        raise AnchorUnavailable(
            f"the holt-winters anchor needs statsmodels, which is not installed: {_INSTALL_HINT}"
        ) from error
    return ETSModel, pandas


def _load_statsforecast() -> tuple[Any, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from statsforecast.models import MSTL, AutoETS
    except ImportError as error:
        raise AnchorUnavailable(
            f"the mstl-autoets anchor needs statsforecast, which is not installed: {_INSTALL_HINT}"
        ) from error
    return MSTL, AutoETS


def fracast_zero(
    context: FloatArray, step_seconds: int, horizon: int, quantiles: Sequence[float]
) -> FloatArray:
    """Fracast-0, a pretrained foundation model, zero-shot (loaded by `forecaster.pretrained`
    on the first call). A level between two of its levels (0.1, 0.2 .. 0.9) is interpolated
    between their forecasts; a level outside them is refused. A context of fewer than its
    minimum of observations gets `last_value`'s forecast."""
    ctx = _prepare(context, step_seconds, horizon, quantiles)
    from forecaster import pretrained

    low, high = pretrained.LEVELS[0], pretrained.LEVELS[-1]
    outside = [f"{level:g}" for level in ctx.levels if not low - 1e-9 <= level <= high + 1e-9]
    if outside:
        raise ValueError(
            f"Fracast-0 forecasts the levels {low:g} .. {high:g}, not {', '.join(outside)}"
        )
    if np.sum(np.isfinite(ctx.observed)) < pretrained.MIN_CONTEXT:
        return _last_value(ctx)
    steps = pretrained.forecast(ctx.filled, horizon)
    values = np.array(
        [[np.interp(level, pretrained.LEVELS, row) for row in steps] for level in ctx.levels]
    )
    return _assemble(ctx, np.zeros(horizon), values)


ANCHORS: dict[str, Anchor] = {
    "last-value": last_value,
    "seasonal-naive": seasonal_naive,
    "holt-winters": holt_winters,
    "mstl-autoets": mstl_autoets,
    "fracast-0": fracast_zero,
}
