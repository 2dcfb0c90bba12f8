"""The model's configuration: every hyper-parameter, saved beside the weights.

`ModelConfig` is what `estimator_config.yaml` holds. Loading checks the format version and
every field, so that a folder written by an incompatible version fails with a message that
names the field, instead of producing wrong forecasts.

Format 2 added the lead part of the horizon (`lead_horizon`), three candidates and three
zero-initialised parameter groups (see `forecaster.model`). A format-1 folder still loads: it
reads as format 2 with no lead part and those parameters at zero, which is exactly the
network it was trained as.
"""

from __future__ import annotations

import dataclasses
from typing import Any

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
MODEL_NAME = "seasonal-ensemble-quantile"

CANDIDATES = (
    "last",
    "day",
    "day_adjusted",
    "week",
    "week_adjusted",
    "median3_adjusted",
    "median7_adjusted",
    "median7_damped",
    "level_15m",
    "level_1h",
    "median7_adjusted_1h",
)
"""The bank of seasonal forecasters the model weights (see `forecaster.features`)."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the model, its inputs and its training."""

    format_version: int = FORMAT_VERSION
    model: str = MODEL_NAME
    step_seconds: int = 300
    """The step the model was trained for first; it serves any step from 1 min to 1 h."""
    context_length: int = 4032
    """Steps of history the model reads at `step_seconds` (14 days of 5-minute steps)."""
    prediction_length: int = 48
    """The longest horizon, in steps (4 h at 5 minutes)."""
    quantiles: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
    candidates: tuple[str, ...] = CANDIDATES
    level_window: int = 3
    """Steps averaged for the current level that the adjusted candidates start from."""
    damping_seconds: int = 10800
    """Time constant of the damped level adjustment."""
    recent_window: int = 48
    """Steps of recent history the calibration network sees."""
    short_horizon: int = 12
    """Errors and weights are kept separately for steps [0, short) and [short, H)."""
    lead_horizon: int = 3
    """When above 0, [0, short) is split at it: the steps the scaling policy's lead windows
    read (5 to 15 minutes at a 5-minute step) get in-context errors and weights of their own."""
    backtest_days: float = 2.0
    backtest_every_seconds: int = 14400
    recent_backtest_seconds: int = 14400
    """Over this last span, origins every `recent_backtest_every_seconds` are replayed too,
    for the parts of the horizon whose outcome is already known (format 2; 0 for none)."""
    recent_backtest_every_seconds: int = 1800
    min_history_days: float = 2.0
    """Below this much history, a statistical fallback forecasts (see `forecaster.fallback`)."""
    temperature: float = 0.3
    """Initial softness of the weighting by in-context error (learned)."""
    hidden_size: int = 64
    tz_offset_seconds: int = 0
    """Offset added to UTC before calendar features are computed (daily patterns in local time)."""
    seed: int = 20261128
    epochs: int = 6
    batch_size: int = 256
    learning_rate: float = 0.002
    weight_decay: float = 0.0001
    training_samples: int = 48000
    synthetic_fraction: float = 0.5
    synthetic_series: int = 400
    holdout_days: float = 3.0
    """The last days of every training trace are left out (the benchmark's evaluation span)."""

    def context_steps(self, step: int) -> int:
        """History steps the model reads at `step` seconds: `context_length` at its own step."""
        return max(1, round(self.context_length * self.step_seconds / step))

    def horizon_parts(self) -> tuple[tuple[int, int], ...]:
        """The parts of the horizon that errors and weights are kept for, as (start, end)."""
        cuts = [0, self.lead_horizon, self.short_horizon, self.prediction_length]
        kept = [cut for index, cut in enumerate(cuts) if index == 0 or cut > cuts[index - 1]]
        return tuple(zip(kept, kept[1:], strict=False))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["quantiles"] = list(self.quantiles)
        data["candidates"] = list(self.candidates)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        """Build from parsed YAML; raises ValueError naming every bad field."""
        if not isinstance(data, dict):
            raise ValueError("must be a mapping of hyper-parameters")
        fields = {field.name: field for field in dataclasses.fields(cls)}
        problems = [f"unknown field {key!r}" for key in data if key not in fields]
        if data.get("format_version") not in READABLE_FORMATS:
            problems.append(
                f"format_version is {data.get('format_version')!r}; this version reads "
                f"{', '.join(map(str, READABLE_FORMATS))}"
            )
        elif data["format_version"] == 1:
            data = {"lead_horizon": 0, "recent_backtest_seconds": 0, **data}
        if data.get("model", MODEL_NAME) != MODEL_NAME:
            problems.append(f"model is {data.get('model')!r}, not {MODEL_NAME!r}")
        values: dict[str, Any] = {}
        for name, field in fields.items():
            if name not in data:
                continue
            value = data[name]
            default = field.default
            if isinstance(default, tuple):
                if not isinstance(value, list):
                    problems.append(f"{name} must be a list")
                    continue
                value = tuple(value)
            elif not isinstance(value, type(default)) and not (
                isinstance(default, float) and isinstance(value, int)
            ):
                problems.append(f"{name} must be a {type(default).__name__}")
                continue
            values[name] = value
        if problems:
            raise ValueError("; ".join(problems))
        config = cls(**values)
        config.check()
        return config

    def check(self) -> None:
        problems = []
        if list(self.quantiles) != sorted(set(self.quantiles)) or 0.5 not in self.quantiles:
            problems.append("quantiles must be increasing, distinct and include 0.5")
        if not all(0 < q < 1 for q in self.quantiles):
            problems.append("quantiles must lie in (0, 1)")
        unknown = set(self.candidates) - set(CANDIDATES)
        if unknown:
            problems.append(f"unknown candidates {sorted(unknown)}")
        if not 0 < self.short_horizon < self.prediction_length:
            problems.append("short_horizon must lie inside the prediction length")
        if not 0 <= self.lead_horizon < self.short_horizon:
            problems.append("lead_horizon must lie in [0, short_horizon)")
        if self.format_version == 1 and (self.lead_horizon or self.recent_backtest_seconds):
            problems.append("format 1 has no lead_horizon and no recent_backtest_seconds")
        if self.recent_backtest_seconds < 0 or self.recent_backtest_every_seconds <= 0:
            problems.append("recent backtests need a span >= 0 and a positive interval")
        if problems:
            raise ValueError("; ".join(problems))
