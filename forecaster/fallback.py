"""Forecasts for series with too little history for the model (under `min_history_days`).

The model needs at least two days: one to have a "yesterday" and one to measure in context
how well each candidate works. Below that:

- with at least one full day: **seasonal-naive-adjusted**, yesterday's values at the same times,
  moved to today's level (mean of the last `level_window` steps);
- with less: **naive**, the last observed value.

The spread comes from the series itself: the empirical quantiles of the h-step changes
``x[t+h] - x[t]`` over the history, per horizon step where at least 20 pairs exist, otherwise
the 1-step quantiles widened by sqrt(h). Every forecast says which method produced it.
"""

from __future__ import annotations

import numpy as np

from forecaster import features
from forecaster.config import ModelConfig
from forecaster.errors import InsufficientHistory

SEASONAL = "seasonal-naive-adjusted"
NAIVE = "naive"
_MIN_PAIRS = 20


def forecast(
    values: np.ndarray, step_seconds: int, horizon: int, quantiles: np.ndarray, config: ModelConfig
) -> tuple[np.ndarray, str]:
    """(Q, horizon) quantile forecasts and the method name."""
    observed = np.flatnonzero(~np.isnan(values))
    if len(observed) == 0:
        raise InsufficientHistory("the history holds no observed value")
    values = values[observed[0] :]
    period = features.period_of(step_seconds)
    bank = features.bank(values[None, :], len(values), step_seconds, config)
    if len(values) >= period + config.level_window:
        method, point = SEASONAL, bank["day_adjusted"][0]
    else:
        method, point = NAIVE, bank["last"][0]
    point = point[:horizon]
    spread = _change_quantiles(values, horizon, quantiles)
    # Ordered by construction: the k-th lowest requested quantile gets the k-th lowest row.
    ranked = np.sort(point[None, :] + spread, axis=0)
    result = np.empty_like(ranked)
    result[np.argsort(quantiles, kind="stable")] = ranked
    return result, method


def _change_quantiles(values: np.ndarray, horizon: int, quantiles: np.ndarray) -> np.ndarray:
    """(Q, horizon) empirical quantiles of h-step changes; zeros if there are none."""
    out = np.zeros((len(quantiles), horizon))
    one_step: np.ndarray | None = None
    for h in range(1, horizon + 1):
        changes = values[h:] - values[:-h] if len(values) > h else np.empty(0)
        changes = changes[~np.isnan(changes)]
        if len(changes) >= _MIN_PAIRS:
            out[:, h - 1] = np.quantile(changes, quantiles)
            if h == 1:
                one_step = out[:, 0].copy()
        elif one_step is not None:
            out[:, h - 1] = one_step * np.sqrt(h)
    return out
