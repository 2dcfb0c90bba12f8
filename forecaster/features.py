"""Model inputs from raw history: the candidate bank, its in-context errors, and scaling.

Everything is vectorised over a batch of series that share one step: `values` is a
``(batch, steps)`` float64 array, oldest first, left-padded with NaN, NaN wherever a value is
missing. Nothing here learns; the model weights what this module computes.

**Candidates** (each a forecast for steps 1..H made at the end of the history), built from the
daily period P = 86400 / step. "d days ago" for forecast step h means the value exactly
``d + (h // P)`` whole days before it, so every candidate only reads the past:

- ``last``: the last observed value, flat;
- ``day`` / ``week``: the values one day / one week earlier (seasonal naive), capped to the
  band the other days of the week span, so that a one-off spike is not repeated;
- ``*_adjusted``: the same shape moved to the current level (mean of the last `level_window`
  steps minus the mean of the matching steps in the reference);
- ``median3_adjusted`` / ``median7_adjusted``: the per-step median of the last 3 / 7 days,
  level-adjusted; ``median7_damped``: the level adjustment fades with the horizon;
  ``median7_adjusted_1h``: the same median moved by the level of the last hour, not the last
  `level_window` steps (steadier on noisy series);
- ``level_15m`` / ``level_1h``: the mean of the last 15 minutes / hour, flat (a noisy series
  without a usable cycle is best forecast by its smoothed level, not its last point).

**In-context errors**: every candidate is also run at earlier origins inside the history (every
`backtest_every_seconds` over the last `backtest_days`), and its mean absolute error against
what then happened is kept for each part of the horizon (`ModelConfig.horizon_parts`: the
lead steps, the rest of the first hour, the rest). That is how the
model learns which structure a series has: a series that repeats its week makes ``week``
nearly exact, a drifting one favours the adjusted medians, a noisy flat one ``last``.

**Scaling**: values are centred on the current level and divided by the in-sample mean
absolute error of the daily seasonal naive method (falling back to the mean absolute
step-to-step difference; a series that never changed is forecast flat), so a series of 0.003
and one of 3,000,000 look alike, and the training loss is in the units the benchmark's MASE
uses. The recent history the network reads is clipped at +-30 scale units, so that a single
spike cannot dominate; the candidates are not clipped.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from forecaster.config import ModelConfig

CLIP = 30.0
"""Bound on the recent history the network reads, in scale units (a spike cannot dominate)."""
TARGET_CLIP = 1000.0
"""Bound on training targets and in-context errors, in scale units: far enough that a
predictable burst of a very regular series is kept whole, near enough to stay finite."""
DAY = 86400
WEEK = 7 * DAY
CONTEXT_FEATURES = 7
"""Columns of `Features.context` (see `build`)."""


@dataclasses.dataclass
class Features:
    """Model inputs for a batch; arrays are float32 except `center` and `scale`."""

    candidates: np.ndarray  # (B, M, H) scaled forecasts
    errors: np.ndarray  # (B, M, P) scaled in-context mean absolute errors, per horizon part
    recent: np.ndarray  # (B, R) scaled recent history
    context: np.ndarray  # (B, 7): has-backtest, observed fraction, calendar (4), log step
    center: np.ndarray  # (B, 1) float64
    scale: np.ndarray  # (B, 1) float64


def period_of(step_seconds: int) -> int:
    """Steps per day (at least 1)."""
    return max(1, round(DAY / step_seconds))


def nanmedian_days(windows: np.ndarray) -> np.ndarray:
    """Median over axis 1 ignoring NaN (NaN where all are NaN); faster than np.nanmedian."""
    ordered = np.sort(windows, axis=1)  # NaN sorts last
    count = np.sum(~np.isnan(windows), axis=1)
    low = np.clip((count - 1) // 2, 0, None)[:, None, :]
    high = np.clip(count // 2, 0, None)[:, None, :]
    median = 0.5 * (
        np.take_along_axis(ordered, low, 1)[:, 0] + np.take_along_axis(ordered, high, 1)[:, 0]
    )
    return np.where(count > 0, median, np.nan)


def _gather(values: np.ndarray, index: np.ndarray, end: int) -> np.ndarray:
    """values[:, index] with NaN where the index is outside [0, end)."""
    inside = (index >= 0) & (index < end)
    out = np.full((values.shape[0], *index.shape), np.nan)
    out[:, inside] = values[:, index[inside]]
    return out


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    count = np.sum(~np.isnan(values), axis=axis)
    total = np.nansum(values, axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def candidates(values: np.ndarray, end: int, step_seconds: int, config: ModelConfig) -> np.ndarray:
    """The (B, M, H) candidate forecasts made at `end` (exclusive) from values[:, :end], in
    the order of `config.candidates`."""
    every = bank(values, end, step_seconds, config)
    return np.stack([every[name] for name in config.candidates], 1)


def bank(
    values: np.ndarray, end: int, step_seconds: int, config: ModelConfig
) -> dict[str, np.ndarray]:
    """Every known candidate by name, each (B, H), made at `end` (exclusive) from
    values[:, :end]. A candidate without data at some step falls back to the last value there."""
    period = period_of(step_seconds)
    horizon, k = config.prediction_length, config.level_window
    steps = np.arange(horizon)
    level = _nanmean(values[:, max(0, end - k) : end], 1)
    last = values[:, end - 1] if end > 0 else np.full(values.shape[0], np.nan)
    last = np.where(np.isnan(last), level, last)

    def days_ago(days: int) -> tuple[np.ndarray, np.ndarray]:
        """(reference for steps 1..H, the k steps before it) from `days` days earlier."""
        ahead = _gather(values, end + steps - period * (days + steps // period), end)
        before = _gather(values, end - k + np.arange(k) - period * days, end)
        return ahead, before

    pairs = [days_ago(days) for days in range(1, 8)]
    ahead = np.stack([pair[0] for pair in pairs], 1)  # (B, 7, H)
    before = np.stack([pair[1] for pair in pairs], 1)  # (B, 7, k)
    single_ahead = {day: _within_others(ahead, day) for day in (0, 6)}
    single_before = {day: _within_others(before, day) for day in (0, 6)}

    def adjusted(reference: np.ndarray, reference_before: np.ndarray) -> np.ndarray:
        shift = np.nan_to_num(level - _nanmean(reference_before, 1))
        return np.asarray(reference + shift[:, None])

    damping = np.exp(-(steps + 1) * step_seconds / config.damping_seconds)
    median3 = nanmedian_days(ahead[:, :3]), nanmedian_days(before[:, :3])
    median7 = nanmedian_days(ahead), nanmedian_days(before)
    shift7 = np.nan_to_num(level - _nanmean(median7[1], 1))

    def level_over(seconds: int) -> np.ndarray:
        window = max(1, round(seconds / step_seconds))
        mean = _nanmean(values[:, max(0, end - window) : end], 1)
        return np.where(np.isnan(mean), last, mean)

    hour = max(1, round(3600 / step_seconds))
    hour_before = np.stack(
        [
            _gather(values, end - hour + np.arange(hour) - period * days, end)
            for days in range(1, 8)
        ],
        1,
    )
    shift7_hour = np.nan_to_num(level_over(3600) - _nanmean(nanmedian_days(hour_before), 1))
    made = {
        "last": np.repeat(last[:, None], horizon, 1),
        "level_15m": np.repeat(level_over(900)[:, None], horizon, 1),
        "level_1h": np.repeat(level_over(3600)[:, None], horizon, 1),
        "median7_adjusted_1h": median7[0] + shift7_hour[:, None],
        "day": single_ahead[0],
        "day_adjusted": adjusted(single_ahead[0], single_before[0]),
        "week": single_ahead[6],
        "week_adjusted": adjusted(single_ahead[6], single_before[6]),
        "median3_adjusted": adjusted(*median3),
        "median7_adjusted": adjusted(*median7),
        "median7_damped": median7[0] + shift7[:, None] * damping[None, :],
    }
    return {name: np.where(np.isnan(made[name]), made["last"], made[name]) for name in made}


def _within_others(days: np.ndarray, day: int) -> np.ndarray:
    """One reference day, capped to the band the other six days span, widened by that span.

    A burst that recurs every day stays whole; a one-off spike on that single day (a deploy,
    an incident) is cut down to what the other days make plausible. Days without data leave
    the value as it is.
    """
    others = np.delete(days, day, axis=1)
    seen = np.sum(~np.isnan(others), axis=1)
    missing = np.isnan(others)
    high = np.max(np.where(missing, -np.inf, others), axis=1)
    low = np.min(np.where(missing, np.inf, others), axis=1)
    usable = (seen >= 2) & ~np.isnan(days[:, day])
    width = np.where(usable, high - low, 0.0)
    capped = np.clip(
        days[:, day], np.where(usable, low - width, -np.inf), np.where(usable, high + width, np.inf)
    )
    return np.where(usable, capped, days[:, day])


def build(
    values: np.ndarray,
    step_seconds: int,
    last_timestamps: np.ndarray,
    config: ModelConfig,
) -> Features:
    """Features for a batch whose last observations are at `last_timestamps` (unix s)."""
    values = np.asarray(values, dtype=np.float64)
    batch, length = values.shape
    period = period_of(step_seconds)
    horizon = config.prediction_length
    bank = candidates(values, length, step_seconds, config)

    parts = config.horizon_parts()
    errors = np.zeros((batch, len(config.candidates), len(parts)))
    counted = np.zeros((batch, 1, len(parts)))
    every = max(1, round(config.backtest_every_seconds / step_seconds))
    span = round(config.backtest_days * period)
    origins = list(range(length - horizon, length - horizon - span, -every))
    # Recent origins, whose outcome is known only for the first parts of the horizon: they
    # tell the lead parts what just worked (after a level shift an hour ago, not yesterday).
    recent_every = max(1, round(config.recent_backtest_every_seconds / step_seconds))
    recent_span = round(config.recent_backtest_seconds / step_seconds)
    origins += [
        origin
        for origin in range(length - parts[0][1], length - recent_span - 1, -recent_every)
        if origin > length - horizon
    ]
    for origin in origins:
        if origin < period:
            continue
        past = candidates(values, origin, step_seconds, config)
        known = min(horizon, length - origin)
        error = np.abs(past[:, :, :known] - values[:, None, origin : origin + known])
        for part, (start, end) in enumerate(parts):
            if end > known:
                continue
            mean = _nanmean(error[:, :, start:end], 2)
            seen = np.isfinite(mean)
            errors[:, :, part] += np.where(seen, mean, 0.0)
            counted[:, :, part] += seen[:, :1]
    has_backtest = counted[:, 0, 0] > 0
    errors = errors / np.maximum(counted, 1)

    center = _nanmean(values[:, -config.level_window :], 1)
    center = np.where(np.isfinite(center), center, np.nan_to_num(_nanmean(values, 1)))
    scale = _scale(values, period, center)
    # Without a backtest every candidate counts as equally good.
    errors = np.where(has_backtest[:, None, None], errors, scale[:, None, None])

    def scaled(array: np.ndarray, shape: tuple[int, ...], bound: float) -> np.ndarray:
        out = (array - center.reshape(shape)) / scale.reshape(shape)
        return np.asarray(np.nan_to_num(np.clip(out, -bound, bound)), dtype=np.float32)

    recent = values[:, -config.recent_window :]
    if recent.shape[1] < config.recent_window:
        pad = np.full((batch, config.recent_window - recent.shape[1]), np.nan)
        recent = np.concatenate([pad, recent], 1)
    recent = _forward_fill(recent, center)
    first_step = last_timestamps.astype(np.float64) + step_seconds + config.tz_offset_seconds
    day_angle = 2 * np.pi * (first_step % DAY) / DAY
    week_angle = 2 * np.pi * ((first_step + 4 * DAY) % WEEK) / WEEK  # 1970-01-01 was a Thursday
    context = np.stack(
        [
            has_backtest.astype(np.float64),
            np.mean(~np.isnan(values[:, -min(length, 14 * period) :]), 1),
            np.sin(day_angle),
            np.cos(day_angle),
            np.sin(week_angle),
            np.cos(week_angle),
            np.full(batch, math.log(step_seconds) / math.log(3600)),
        ],
        1,
    ).astype(np.float32)
    assert context.shape[1] == CONTEXT_FEATURES
    return Features(
        # The forecast is a weighted mean of the candidates: they need no bound of their own
        # (a regular series' burst can be hundreds of scale units high and must stay whole).
        candidates=scaled(bank, (batch, 1, 1), np.inf),
        errors=np.clip(errors / scale[:, None, None], 0, TARGET_CLIP).astype(np.float32),
        recent=scaled(recent, (batch, 1), CLIP),
        context=context,
        center=center[:, None],
        scale=scale[:, None],
    )


def _scale(values: np.ndarray, period: int, center: np.ndarray) -> np.ndarray:
    """In-sample MAE of the daily seasonal naive method, else of the last value; always > 0."""
    seasonal = (
        _nanmean(np.abs(values[:, period:] - values[:, :-period]), 1)
        if values.shape[1] > period
        else np.full(values.shape[0], np.nan)
    )
    stepwise = _nanmean(np.abs(np.diff(values, axis=1)), 1)
    scale = np.where(np.isfinite(seasonal) & (seasonal > 0), seasonal, np.nan)
    scale = np.where(np.isnan(scale) & np.isfinite(stepwise) & (stepwise > 0), stepwise, scale)
    # A series that never changed: forecast it flat (a vanishing scale, not a made-up one).
    return np.where(np.isnan(scale), 1e-9 * np.maximum(np.abs(center), 1.0), scale)


def _forward_fill(recent: np.ndarray, center: np.ndarray) -> np.ndarray:
    filled = recent.copy()
    first = np.where(np.isnan(filled[:, 0]), center, filled[:, 0])
    filled[:, 0] = first
    for column in range(1, filled.shape[1]):
        gap = np.isnan(filled[:, column])
        filled[gap, column] = filled[gap, column - 1]
    return filled
