"""The time-series forecasting model: numpy arrays of history in, quantile forecasts out.

The bottom layer. It must not import asyncio, aiohttp, the Kubernetes client or anything of
`adapter` and `apiservice`; serving (loading a model folder, forecasting) runs in numpy and
must not import torch, which only training and fine-tuning use (`forecaster.training`, the
``train`` extra). import-linter enforces both.

The stable API (the adapter and outside evaluators use it):

    from forecaster import load_forecaster
    forecaster = load_forecaster()          # the pretrained default; or a model folder
    forecaster.predict(timestamps, values, horizon=48, quantiles=(0.1, 0.5, 0.9))  # (3, 48)
    forecaster.predict_batch([(timestamps, values), ...], horizon=48)              # (B, 3, 48)
    forecaster.forecast(...).method         # "model", or the fallback used for short history

Command line: ``python -m forecaster {train,predict,backtest}``.

The model's names load on first use: importing the package (for its errors, say) loads no
model code, so commands that never forecast start fast and stay small.
"""

from typing import TYPE_CHECKING, Any

from forecaster.errors import ArtifactError, ForecasterError, InsufficientHistory, InvalidSeries

if TYPE_CHECKING:
    from forecaster.predictor import Forecast, Forecaster, load_forecaster

_PREDICTOR_NAMES = frozenset({"Forecast", "Forecaster", "load_forecaster"})


def __getattr__(name: str) -> Any:
    if name in _PREDICTOR_NAMES:
        from forecaster import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ArtifactError",
    "Forecast",
    "Forecaster",
    "ForecasterError",
    "InsufficientHistory",
    "InvalidSeries",
    "load_forecaster",
]
