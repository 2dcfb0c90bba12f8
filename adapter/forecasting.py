"""Forecasting every due target in batched calls, each target's failure its own.

The model runs in a dedicated worker thread (the network never runs on the event loop). The traffic
signals of all due targets go to the worker in one hop, and to `Forecaster.forecast_batch`
`SERIES_PER_CALL` at a time (which bounds the memory of a refresh of thousands of targets).
A series the model cannot read fails that whole call; the targets are then forecast one by
one, so that the error lands as `ForecastFailed` on the targets whose series caused it and the
others are forecast as usual. A model that returns the wrong number of forecasts counts as
failed the same way.

`inputs` gathers a target's histories to forecast from; `track_error` keeps the realised
error of the forecasts (what /metrics shows), judging each against the median forecast made
for its step, of which a target keeps one array per signal.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Sequence

import numpy as np

import forecaster
from adapter.config import TrafficSignal
from adapter.errors import ForecastFailed, RefreshFailed
from adapter.history import Points
from adapter.state import TargetState

logger = logging.getLogger(__name__)

SERIES_PER_CALL = 128
"""Series per `Forecaster.forecast_batch` call: what a call holds (its checked copy of every
history, the model's features) stays bounded however many targets are due."""

Forecasts = list[forecaster.Forecast]
"""One target's forecasts, one per traffic signal in configured order."""


async def forecast_each(
    model: forecaster.Forecaster,
    pool: concurrent.futures.Executor,
    requests: Sequence[Sequence[Points]],
    horizon: int,
    quantiles: Sequence[float],
) -> list[Forecasts | ForecastFailed]:
    """For each request (one target's signal histories), its forecasts or why it failed."""
    if not requests:
        return []
    flat = [history for request in requests for history in request]
    try:
        results = await _run(model, pool, flat, horizon, quantiles)
    except Exception as exc:
        if len(requests) == 1:
            return [_failed(exc)]
        logger.debug("the batched forecast failed (%s); forecasting each target alone", exc)
        return [await _alone(model, pool, request, horizon, quantiles) for request in requests]
    out: list[Forecasts | ForecastFailed] = []
    first = 0
    for request in requests:
        out.append(results[first : first + len(request)])
        first += len(request)
    return out


async def _alone(
    model: forecaster.Forecaster,
    pool: concurrent.futures.Executor,
    request: Sequence[Points],
    horizon: int,
    quantiles: Sequence[float],
) -> Forecasts | ForecastFailed:
    try:
        return await _run(model, pool, request, horizon, quantiles)
    except Exception as exc:
        return _failed(exc)


async def _run(
    model: forecaster.Forecaster,
    pool: concurrent.futures.Executor,
    histories: Sequence[Points],
    horizon: int,
    quantiles: Sequence[float],
) -> Forecasts:
    loop = asyncio.get_running_loop()
    results = await loop.run_in_executor(
        pool, _in_batches, model, histories, horizon, tuple(quantiles)
    )
    if len(results) != len(histories):
        raise forecaster.ForecasterError(
            f"the model returned {len(results)} forecasts for {len(histories)} series"
        )
    return results


def _in_batches(
    model: forecaster.Forecaster,
    histories: Sequence[Points],
    horizon: int,
    quantiles: tuple[float, ...],
) -> Forecasts:
    """`model.forecast_batch` over `histories`, `SERIES_PER_CALL` at a time."""
    results: Forecasts = []
    for first in range(0, len(histories), SERIES_PER_CALL):
        results += model.forecast_batch(
            histories[first : first + SERIES_PER_CALL], horizon, quantiles
        )
    return results


def _failed(exc: Exception) -> ForecastFailed:
    text = str(exc)
    text = text if len(text) <= 200 else f"{text[:200]}…"
    failure = ForecastFailed(f"the forecaster failed ({type(exc).__name__}): {text}")
    failure.__cause__ = exc
    return failure


def inputs(state: TargetState) -> list[Points]:
    """The target's traffic histories to forecast from; `RefreshFailed` if one is empty."""
    histories = [state.signal_history(signal) for signal in state.target.traffic]
    empty = [
        signal.name
        for signal, (_, values) in zip(state.target.traffic, histories, strict=True)
        if not np.any(np.isfinite(values))
    ]
    if empty:
        raise RefreshFailed(f"no data for {', '.join(empty)} in the history window")
    return histories


def track_error(
    state: TargetState, signal: TrafficSignal, result: forecaster.Forecast, median: int
) -> None:
    """Record the newest actual load, its error against the median forecast made for it, and
    this forecast's median for the next cycle to judge."""
    times, values = state.signal_history(signal)
    finite = np.flatnonzero(np.isfinite(values))
    if len(finite):
        newest = int(finite[-1])
        actual = float(values[newest])
        state.status.actual_load[signal.name] = actual
        predicted = _made_for(state.previous.get(signal.name), int(times[newest]))
        if predicted is not None:
            state.status.forecast_error[signal.name] = abs(actual - predicted) / max(
                abs(actual), 1e-12
            )
    state.previous[signal.name] = (
        result.first_timestamp,
        result.step_seconds,
        result.values[median].copy(),  # a row of its own, not a view keeping every quantile
    )


def _made_for(made: tuple[int, int, np.ndarray] | None, timestamp: int) -> float | None:
    """The median forecast `made` for `timestamp` (None: it forecast no such step)."""
    if made is None:
        return None
    first, step, median = made
    ahead, off = divmod(timestamp - first, step)
    return float(median[ahead]) if off == 0 and 0 <= ahead < len(median) else None
