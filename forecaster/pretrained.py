"""Fracast-0, a pretrained foundation model, loaded for the ``fracast-0`` benchmark anchor.

Fracast-0 (the ``fracast`` package 0.1.0, Apache-2.0) is an 85,001-parameter convolutional
model pretrained on a large public corpus; its weights ship inside the wheel, so it loads
without a network. It reads up to 2,048 steps of context, forecasts 48 steps per block (longer
horizons roll its median forward) and gives the nine quantile levels of `LEVELS`. It is used
zero-shot with the weights ``FracastModel.from_pretrained()`` loads by default (int8).
`forecaster.anchors.fracast_zero` turns its output into an anchor's.

``fracast`` (and torch, which it imports) is optional, part of the ``bench`` extra: it is
imported on the first call, and `AnchorUnavailable` says how to install it when it is missing.
The model is loaded once per process and kept: the one piece of state of the anchors. This
module does no I/O of its own and must not import anything of `adapter` or `apiservice`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import numpy.typing as npt

from forecaster.anchors import AnchorUnavailable

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""The quantile levels Fracast-0 forecasts, in its output's order."""
MIN_CONTEXT = 8
"""The fewest observed steps it forecasts from."""


@functools.cache
def _model() -> Any:
    try:
        from fracast.inference import FracastModel
    except ImportError as error:
        raise AnchorUnavailable(
            "the fracast-0 anchor needs fracast, which is not installed: "
            "pip install 'predictive-metrics-adapter[bench]'"
        ) from error
    model = FracastModel.from_pretrained()
    if tuple(model.quantiles) != LEVELS:
        raise AnchorUnavailable(f"fracast forecasts the levels {model.quantiles}, not {LEVELS}")
    return model


def forecast(history: npt.NDArray[np.float64], horizon: int) -> npt.NDArray[np.float64]:
    """The model's forecast of the `horizon` steps after `history` (gap-free, at least
    `MIN_CONTEXT` long): shape (horizon, len(LEVELS))."""
    return np.asarray(_model().forecast(history, horizon=horizon), dtype=np.float64)
