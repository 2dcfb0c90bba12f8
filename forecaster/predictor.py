"""The stable API: `load_forecaster(path)` and the `Forecaster` it returns.

    forecaster = load_forecaster()                      # the pretrained default
    q = forecaster.predict(timestamps, values, horizon=48, quantiles=(0.1, 0.5, 0.9))
    q.shape == (3, 48)

`timestamps` are evenly spaced int64 unix seconds (any step from 1 minute to 1 hour), `values`
float64 with NaN for gaps. Series with at least `min_history_days` of history go through the
model; shorter ones through a documented fallback (`forecaster.fallback`); `forecast()` says
which. `predict_batch` forecasts many series at once (per step size, network calls of at most
`ROWS_PER_CALL` series).

Forecasts are finite; if a series was never negative, neither is its forecast. Quantiles
other than those the model was trained on are interpolated between them; quantiles outside
the trained range are refused rather than guessed.

Serving never imports torch: the network runs in numpy (`forecaster.network`). Only
`Forecaster.fine_tune` and `Forecaster.save` reach torch, through `forecaster.training`, which
they import when called (the ``train`` extra).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from forecaster import artifacts, fallback, features
from forecaster.config import ModelConfig
from forecaster.errors import InsufficientHistory
from forecaster.network import SeasonalEnsembleNetwork
from forecaster.series import regular

MODEL = "model"
ROWS_PER_CALL = 128
"""Series the network reads at once: the features of a batch (float64, a dozen arrays of
rows x context steps) are built and freed this many rows at a time, which bounds the memory
of forecasting thousands of series. A row's features depend on that row alone; its forecast
is the same up to the rounding of the network's matrix products, which varies with the size
of a batch (chunked or not)."""

History = tuple[Sequence[int] | np.ndarray, Sequence[float] | np.ndarray]


@dataclasses.dataclass(frozen=True)
class Forecast:
    """Quantile forecasts for one series."""

    quantiles: tuple[float, ...]
    values: np.ndarray  # (len(quantiles), horizon)
    method: str  # "model", "seasonal-naive-adjusted" or "naive"
    step_seconds: int
    first_timestamp: int  # unix seconds of the first forecast step


class Forecaster:
    """A loaded model; thread-safe for concurrent predictions (no mutable state)."""

    def __init__(
        self,
        model: SeasonalEnsembleNetwork,
        config: ModelConfig,
        items: dict[str, int],
        source: str,
    ) -> None:
        self.model = model
        self.config = config
        self.items = items
        self.source = source
        self._grid = np.asarray(config.quantiles)

    # --- public API --------------------------------------------------------------------

    def predict(
        self,
        timestamps: Sequence[int] | np.ndarray,
        values: Sequence[float] | np.ndarray,
        horizon: int,
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    ) -> np.ndarray:
        """(len(quantiles), horizon) forecasts for the steps after the last timestamp."""
        return self.forecast(timestamps, values, horizon, quantiles).values

    def forecast(
        self,
        timestamps: Sequence[int] | np.ndarray,
        values: Sequence[float] | np.ndarray,
        horizon: int,
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    ) -> Forecast:
        return self.forecast_batch([(timestamps, values)], horizon, quantiles)[0]

    def predict_batch(
        self,
        histories: Sequence[History],
        horizon: int,
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    ) -> np.ndarray:
        """(len(histories), len(quantiles), horizon) forecasts."""
        forecasts = self.forecast_batch(histories, horizon, quantiles)
        return (
            np.stack([f.values for f in forecasts])
            if forecasts
            else np.empty((0, len(quantiles), horizon))
        )

    def forecast_batch(
        self,
        histories: Sequence[History],
        horizon: int,
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    ) -> list[Forecast]:
        requested = self._check_request(horizon, quantiles)
        checked = [regular(times, values) for times, values in histories]
        results: list[Forecast | None] = [None] * len(checked)
        by_step: dict[int, list[int]] = {}
        for position, (times, values, step) in enumerate(checked):
            observed = np.flatnonzero(~np.isnan(values))
            if len(observed) == 0:
                raise InsufficientHistory(f"series {position} holds no observed value")
            span_days = (times[-1] - times[observed[0]] + step) / 86400
            if span_days >= self.config.min_history_days:
                by_step.setdefault(step, []).append(position)
            else:
                grid, method = fallback.forecast(
                    values, step, horizon, np.asarray(requested), self.config
                )
                out = self._finish(grid, values)
                results[position] = self._result(requested, out, method, step, times)
        for step, positions in by_step.items():
            grid = self._model_forecast([checked[p] for p in positions], step)
            for row, position in enumerate(positions):
                times, values, _ = checked[position]
                values_grid = self._finish(grid[row, :, :horizon], values)
                out = _interpolate(self._grid, values_grid, requested)
                results[position] = self._result(requested, out, MODEL, step, times)
        return [r for r in results if r is not None]

    def fine_tune(self, histories: Sequence[History], max_seconds: float = 60.0) -> Forecaster:
        """A copy trained further on these series' own history (one step size), for at most
        `max_seconds` of CPU time; this forecaster is left as it was. Needs torch (the
        ``train`` extra)."""
        from forecaster import training  # only fine-tuning needs the training machinery

        checked = [regular(times, values)[:2] for times, values in histories]
        model = training.fine_tune(self.model, self.config, checked, max_seconds)
        return Forecaster(model, self.config, self.items, f"{self.source} (fine-tuned)")

    def save(self, folder: Path) -> None:
        """Write this model as a model folder. Needs torch (the ``train`` extra), which writes
        the checkpoint in its own format."""
        from forecaster import training  # the checkpoint is written by torch

        artifacts.write(folder, training.encode(self.model), self.config, self.items)

    # --- internals ---------------------------------------------------------------------

    def _check_request(self, horizon: int, quantiles: Sequence[float]) -> tuple[float, ...]:
        if not 1 <= horizon <= self.config.prediction_length:
            raise ValueError(
                f"horizon must be 1..{self.config.prediction_length} steps, not {horizon}"
            )
        requested = tuple(float(q) for q in quantiles)
        low, high = self.config.quantiles[0], self.config.quantiles[-1]
        outside = [q for q in requested if not low <= q <= high]
        if outside or not requested:
            raise ValueError(
                f"quantiles must lie in [{low}, {high}] (the trained range), got {list(requested)}"
            )
        return requested

    def _model_forecast(
        self, series: list[tuple[np.ndarray, np.ndarray, int]], step: int
    ) -> np.ndarray:
        """(B, Q_grid, H_max) unscaled forecasts for series that share `step`, computed
        `ROWS_PER_CALL` series at a time."""
        length = self.config.context_steps(step)
        parts = []
        for first in range(0, len(series), ROWS_PER_CALL):
            rows = series[first : first + ROWS_PER_CALL]
            block = np.full((len(rows), length), np.nan)
            last_times = np.empty(len(rows), dtype=np.int64)
            for row, (times, values, _) in enumerate(rows):
                tail = values[-length:]
                block[row, length - len(tail) :] = tail
                last_times[row] = times[-1]
            inputs = features.build(block, step, last_times, self.config)
            scaled = self.model(inputs.candidates, inputs.errors, inputs.recent, inputs.context)
            parts.append(scaled * inputs.scale[:, :, None] + inputs.center[:, :, None])
        return np.concatenate(parts)

    def _finish(self, grid: np.ndarray, history: np.ndarray) -> np.ndarray:
        grid = np.nan_to_num(grid)
        if np.nanmin(history) >= 0:
            grid = np.maximum(grid, 0.0)
        return grid

    def _result(
        self,
        requested: tuple[float, ...],
        values: np.ndarray,
        method: str,
        step: int,
        times: np.ndarray,
    ) -> Forecast:
        return Forecast(requested, values, method, step, int(times[-1]) + step)


def load_forecaster(path: str | Path | None = None) -> Forecaster:
    """Load a model folder; None loads the pretrained default shipped in the package."""
    folder = Path(path) if path is not None else artifacts.default_path()
    model, config, items = artifacts.load(folder)
    return Forecaster(model, config, items, str(folder))


def _interpolate(grid: np.ndarray, values: np.ndarray, requested: tuple[float, ...]) -> np.ndarray:
    """Quantiles `requested` from values at the `grid` quantiles (rows), linearly."""
    out = np.empty((len(requested), values.shape[1]))
    for row, q in enumerate(requested):
        upper = int(np.searchsorted(grid, q, side="left"))
        if upper < len(grid) and grid[upper] == q:
            out[row] = values[upper]
            continue
        lower = upper - 1
        weight = (q - grid[lower]) / (grid[upper] - grid[lower])
        out[row] = (1 - weight) * values[lower] + weight * values[upper]
    return out
