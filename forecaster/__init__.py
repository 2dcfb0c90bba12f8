"""The time-series forecasting model: numpy arrays of history in, quantile forecasts out.

The bottom layer. It may import torch and numpy; it must not import asyncio, aiohttp, the
Kubernetes client or anything of `adapter` and `apiservice` (import-linter enforces this).

The stable API (the adapter and outside evaluators use it):

    from forecaster import load_forecaster
    forecaster = load_forecaster()          # the pretrained default; or a model folder
    forecaster.predict(timestamps, values, horizon=48, quantiles=(0.1, 0.5, 0.9))  # (3, 48)
    forecaster.predict_batch([(timestamps, values), ...], horizon=48)              # (B, 3, 48)
    forecaster.forecast(...).method         # "model", or the fallback used for short history

Command line: ``python -m forecaster {train,predict,backtest}``.
"""

from forecaster.errors import ArtifactError, ForecasterError, InsufficientHistory, InvalidSeries
from forecaster.predictor import Forecast, Forecaster, load_forecaster

__all__ = [
    "ArtifactError",
    "Forecast",
    "Forecaster",
    "ForecasterError",
    "InsufficientHistory",
    "InvalidSeries",
    "load_forecaster",
]
