"""Forecasts at past steps, as the refresher would have made them then, in batches.

Calibrating a bound and tuning a setting (`adapter.objective`) need what the model forecast
at every step of the recent history. `median_peaks` makes those forecasts the way a refresh
makes its own: `Forecaster.forecast_batch` on the history window up to the step before each
origin (at most `history_steps` of it), in batches of `chunk` origins; the median's maximum
over the lead window is what is kept. The refresher uses it to fill a target's peak log, the
replay command and ``make bench-scaling`` to replay a history.

Runs the model: call it off the event loop. No I/O, no clock, no logging.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from forecaster.predictor import Forecast, History

__all__ = ["CHUNK", "BatchForecaster", "forecast_origins", "median_peaks"]

CHUNK = 128
"""Origins per `forecast_batch` call: bounds the memory of one call's histories."""


class BatchForecaster(Protocol):
    """What is needed of `forecaster.Forecaster`: its batched entry."""

    def forecast_batch(
        self, histories: Sequence[History], horizon: int, quantiles: Sequence[float] = ...
    ) -> list[Forecast]: ...


def forecast_origins(
    model: BatchForecaster,
    times: np.ndarray,
    load: np.ndarray,
    origins: Sequence[int] | np.ndarray,
    history_steps: int,
    horizon: int,
    quantiles: Sequence[float],
    chunk: int = CHUNK,
) -> np.ndarray:
    """(quantile, origin, step ahead) forecasts made at each origin index from
    ``load[origin - history_steps : origin]`` (data up to the step before it).

    Raises:
        ValueError: an origin without a step before it, or a model that answers a batch
            with the wrong number of forecasts.
        forecaster.ForecasterError: what the model raises for a series it cannot read.
    """
    origins = np.asarray(origins, dtype=np.int64)
    if origins.size and (origins.min() < 1 or origins.max() > len(load)):
        raise ValueError(f"origins must lie in 1 .. {len(load)}")
    out = np.full((len(quantiles), origins.size, horizon), np.nan)
    # An origin whose window holds no observed value, or a single step (no step size), has
    # no forecast (NaN), as a refresh with no data makes none.
    observed = np.concatenate([[0], np.cumsum(np.isfinite(load))])
    lows = np.maximum(0, origins - history_steps)
    usable = np.flatnonzero((observed[origins] > observed[lows]) & (origins - lows >= 2))
    for begin in range(0, usable.size, chunk):
        part = usable[begin : begin + chunk]
        histories: list[History] = []
        for origin in origins[part].tolist():
            low = max(0, origin - history_steps)
            histories.append((times[low:origin], load[low:origin]))
        results = model.forecast_batch(histories, horizon, tuple(quantiles))
        if len(results) != len(histories):
            raise ValueError(f"{len(results)} forecasts for {len(histories)} histories")
        out[:, part] = np.stack([r.values for r in results], axis=1)
    return out


def median_peaks(
    model: BatchForecaster,
    times: np.ndarray,
    load: np.ndarray,
    origins: Sequence[int] | np.ndarray,
    history_steps: int,
    window: int,
    chunk: int = CHUNK,
) -> np.ndarray:
    """Per origin, the maximum of the median forecast over its lead window of `window` steps."""
    forecasts = forecast_origins(model, times, load, origins, history_steps, window, (0.5,), chunk)
    return np.asarray(forecasts[0].max(axis=1))
