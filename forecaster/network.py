"""The network's forward pass in numpy: what serving runs, from the checkpoint's weights.

`SeasonalEnsembleNetwork` computes what `forecaster.model.SeasonalEnsembleModel.forward`
computes, step for step, from the same weights (the checkpoint's ``state_dict`` as numpy
arrays). It computes in float64: the torch model runs in float32, and the difference between
the two is torch's own float32 rounding (a test checks them against each other on every forecast
of the dev traces). GELU is the exact (erf) form, as torch's default; numpy has no erf, so
`erf` is a Chebyshev interpolant of `math.erf`, within 2e-14 of it.

This module must not import torch (import-linter enforces it): the serving process never
loads it. Training, fine-tuning and saving a checkpoint use `forecaster.model` instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.polynomial import chebyshev

from forecaster import features
from forecaster.config import FORMAT_VERSION, ModelConfig

_EPS = 1e-2
"""Floor for errors in scale units, as in `forecaster.model`."""

_ERF_SATURATES = 6.0
"""Beyond this, erf is 1 to float64 precision (1 - erf(6) = 2e-17)."""
_ERF_DEGREE = 40


def _erf_on_unit(points: np.ndarray) -> Any:  # numpy's stub wants a scalar type here
    """erf on [0, 6], mapped onto [-1, 1]: exact values from `math.erf`, for the interpolant."""
    return np.array([math.erf(_ERF_SATURATES * (x + 1) / 2) for x in points])


_ERF_SERIES = chebyshev.chebinterpolate(_erf_on_unit, _ERF_DEGREE)
"""Chebyshev coefficients of erf on [0, 6], mapped onto [-1, 1] (41 calls of `math.erf`)."""


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, elementwise, within 2e-14 (absolute) of `math.erf`."""
    magnitude = np.minimum(np.abs(x), _ERF_SATURATES)
    inside = chebyshev.chebval(magnitude * (2 / _ERF_SATURATES) - 1, _ERF_SERIES)
    return np.asarray(np.copysign(np.minimum(inside, 1.0), x))


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU in its exact form, x * Phi(x), like torch.nn.GELU()."""
    return np.asarray(0.5 * x * (1.0 + erf(x * (1 / math.sqrt(2)))))


FORMAT_2_PARAMETERS = (
    "selector.weight",
    "selector.bias",
    "log_profile",
    "shift.weight",
    "shift.bias",
)
"""What format 2 added; a format-1 checkpoint is read with them at zero (what they start at)."""


def parameter_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The ``state_dict`` a checkpoint of `config` holds: name -> shape, in the model's order
    (a format-1 checkpoint lacks `FORMAT_2_PARAMETERS`)."""
    gaps = len(config.quantiles) - 1
    hidden = config.hidden_size
    parts = len(config.horizon_parts())
    candidates = len(config.candidates)
    inputs = (
        candidates * 2 * parts + config.recent_window + features.CONTEXT_FEATURES
    )  # log relative and log absolute errors, every part of the horizon; history; context
    shapes = {
        "log_temperature": (parts,),
        "body.0.weight": (hidden, inputs),
        "body.0.bias": (hidden,),
        "body.2.weight": (hidden, hidden),
        "body.2.bias": (hidden,),
        "selector.weight": (candidates * parts, hidden),
        "selector.bias": (candidates * parts,),
        "spread.weight": (gaps * parts, hidden),
        "spread.bias": (gaps * parts,),
        "log_gap": (gaps,),
        "log_profile": (config.prediction_length,),
        "shift.weight": (parts, hidden),
        "shift.bias": (parts,),
        "blend": (parts, config.prediction_length),
    }
    if config.format_version == 1:
        return {name: shape for name, shape in shapes.items() if name not in FORMAT_2_PARAMETERS}
    return shapes


class SeasonalEnsembleNetwork:
    """The trained network, ready to forecast; immutable, so safe to share between threads."""

    def __init__(self, state: Mapping[str, np.ndarray], config: ModelConfig) -> None:
        """`state` must have the names and shapes of `parameter_shapes(config)` (the loader
        checks that and says which file is wrong)."""
        shapes = parameter_shapes(config)
        if config.format_version != FORMAT_VERSION:
            raise ValueError("the loader reads older formats as the current one")
        if set(state) != set(shapes) or any(state[k].shape != s for k, s in shapes.items()):
            raise ValueError("the weights do not have the shapes of this configuration")
        self._state = {name: _frozen(state[name], np.float32) for name in shapes}
        self.median_index = config.quantiles.index(0.5)
        weights = {name: self._state[name].astype(np.float64) for name in shapes}
        self._temperature = np.exp(weights["log_temperature"])
        self._log_gap = weights["log_gap"]
        self._log_profile = weights["log_profile"]
        self._blend = weights["blend"]
        self._layers = {
            name: (weights[f"{name}.weight"].T.copy(), weights[f"{name}.bias"])
            for name in ("body.0", "body.2", "selector", "spread", "shift")
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of the weights as the checkpoint holds them (float32), in the model's order."""
        return {name: array.copy() for name, array in self._state.items()}

    def __call__(
        self,
        candidates: np.ndarray,  # (B, M, H)
        errors: np.ndarray,  # (B, M, P): per part of the horizon
        recent: np.ndarray,  # (B, R)
        context: np.ndarray,  # (B, C)
    ) -> np.ndarray:  # (B, Q, H) float64, in scale units
        candidates, errors, recent, context = (
            np.asarray(array, dtype=np.float64) for array in (candidates, errors, recent, context)
        )
        batch, parts = candidates.shape[0], errors.shape[2]
        best = errors.min(1, keepdims=True)
        relative = (errors + _EPS) / (best + _EPS)
        hidden = np.concatenate(
            [
                np.log(relative).reshape(batch, -1),
                np.log(errors + _EPS).reshape(batch, -1),
                recent,
                context,
            ],
            1,
        )
        for name in ("body.0", "body.2"):
            hidden = gelu(self._linear(name, hidden))
        logits = -(relative - 1) / self._temperature[None, None, :]
        logits = logits + self._linear("selector", hidden).reshape(batch, -1, parts)
        weights = _softmax(logits, axis=1)  # over candidates, per horizon part
        per_step = weights @ self._blend  # (B, M, H)
        median = (per_step * candidates).sum(1)

        expected = (weights * errors).sum(1)  # (B, P)
        sigma = np.maximum(expected @ self._blend, _EPS)
        correction = self._linear("spread", hidden).reshape(batch, -1, parts) @ self._blend
        median = median + (np.tanh(self._linear("shift", hidden)) @ self._blend) * sigma
        gaps = (
            np.exp(self._log_gap[None, :, None] + correction + self._log_profile[None, None, :])
            * sigma[:, None, :]
        )
        # The median minus / plus the gaps summed outwards from it, as torch's flipped cumsum
        # sums them (a loop over the few quantiles: numpy's cumsum along a middle axis is slow).
        out = np.empty((batch, gaps.shape[1] + 1, gaps.shape[2]))
        out[:, self.median_index] = median
        total = np.zeros_like(median)
        for q in range(self.median_index - 1, -1, -1):
            total = total + gaps[:, q]
            out[:, q] = median - total
        total = np.zeros_like(median)
        for q in range(self.median_index, gaps.shape[1]):
            total = total + gaps[:, q]
            out[:, q + 1] = median + total
        return out

    def _linear(self, name: str, inputs: np.ndarray) -> np.ndarray:
        weight, bias = self._layers[name]
        return np.asarray(inputs @ weight + bias)


def _softmax(logits: np.ndarray, axis: int) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis, keepdims=True))


def _frozen(array: np.ndarray, dtype: type[np.floating]) -> np.ndarray:
    copy = np.array(array, dtype=dtype)
    copy.flags.writeable = False
    return copy
