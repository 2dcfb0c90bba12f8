"""Planning: from a target's forecasts to the values it serves. Pure; run off the event loop.

In: the target, its forecasts (one per traffic signal, one row per quantile asked for), those
quantiles, how many steps to plan from, for a resource policy the usage model or, when it is
due for its hourly refit, the history to fit it on, and for a capacity policy its `Sizing`
(the setting in use, the signal's history and the peak log on its grid, and whether a tuning
is due). Out: a `Plan` — the served values (``predicted_<signal>``: the load at now + lead
time, at the target's quantile; ``predicted_replicas``: the policy's count from now, see
`adapter.scaling`), the count planned from each step (for a result ConfigMap), the policy
used, the usage model (refitted or as given), a note, and for a capacity policy the setting
used, where its bound came from, the median's lead-window maximum to log, and the
outcome of a tuning made on the way.

**Capacity policy.** The served count is `adapter.objective.counts` for the setting: the
bound of the lead-window maximum (now up to now + lead time, `ForecastTarget.window_steps`
steps) at the setting's quantile, calibrated on the target's own recent errors
(`objective.lead_window_bounds` over the peak log) once enough are known and the model's own
quantile before, sized at the setting's utilisation, and at least the last value seen at the
reactive utilisation when the setting has a reactive part. A target with an objective that
is due is tuned first (`tune`: `objective.tune` over its recent history), and the setting it
chooses is used at once; the tuning's failure is reported in the plan, never raised. The
counts planned from later steps are the model's quantile over each step's window at the
setting's utilisation.

Every forecast value the plan rests on is checked here, at the edge: it must be finite,
non-negative and within what the HPA's 64-bit milli-value holds (`adapter.api.MAX_VALUE`). One
that is not is `ValueRefused` with the reason: a load is never clamped to 0 and never left for
the API surface to fail on with a 500.

No I/O, no clock, no logging, no shared state: the refresher runs `plan` in a worker thread,
and the usage fit and the tuning (the costly parts) with it.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TypeVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import forecaster
from adapter import objective, scaling
from adapter.api import MAX_VALUE, MetricValue, value_problem
from adapter.config import ForecastTarget
from adapter.errors import ValueRefused
from adapter.predictions import REPLICAS

_LIMIT = float(MAX_VALUE)

FitHistory = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(usage, ready replicas, traffic with one row per signal), aligned."""
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Sizing:
    """What a capacity target's count rests on besides its forecast."""

    setting: objective.Setting
    """The setting in use (unless a due tuning chooses another)."""
    load: np.ndarray
    """The signal's history on its grid, newest last: the forecast's origin is the step
    after the newest point."""
    peaks: np.ndarray
    """The peak log at the origins of `load`'s steps (NaN where none is known)."""
    tune: bool = False
    """Tune the target for its objective before sizing."""


@dataclasses.dataclass(frozen=True)
class Plan:
    values: dict[str, Decimal]
    """Served metric name -> value."""
    loads: dict[str, float]
    """Signal name -> load at now + lead time, at the target's quantile."""
    replicas: int
    per_step: list[tuple[int, int]]
    """(timestamp, count) planned from each of the first `steps` forecast steps (the first
    count is served)."""
    policy: str
    usage: scaling.UsageModel | None
    note: str = ""
    setting: objective.Setting | None = None
    """The capacity policy's setting (None: resource policy)."""
    bound: str = ""
    """Where the served count's bound came from: ``model`` or ``last value`` (calibrated on
    its recent errors), or ``model quantile`` (too few errors known)."""
    median_peak: float = math.nan
    """The median's maximum over the lead window from this forecast's origin (capacity)."""
    tuning: objective.Choice | Exception | None = None
    """The outcome of a tuning made with this plan (None: none was due)."""

    def metric_values(self, target: ForecastTarget, now: float) -> dict[str, MetricValue]:
        """The served values as the store holds them: labelled, stamped `now`."""
        stamp = datetime.datetime.fromtimestamp(now, datetime.UTC)
        labels = {signal.served_metric: target.signal_labels(signal) for signal in target.traffic}
        return {
            metric: MetricValue(labels.get(metric, target.labels), value, stamp, target.lead_time)
            for metric, value in self.values.items()
        }


def plan(
    target: ForecastTarget,
    forecasts: Sequence[forecaster.Forecast],
    quantiles: Sequence[float],
    *,
    steps: int,
    usage: scaling.UsageModel | None,
    fit: FitHistory | None,
    sizing: Sizing | None = None,
) -> Plan:
    """The plan from `forecasts` (rows: `quantiles`); a resource policy without `usage` is
    fitted on `fit`; a capacity policy without `sizing` serves its manual quantile,
    uncalibrated."""
    row = list(quantiles).index(target.quantile)
    lead = target.lead_steps
    values: dict[str, Decimal] = {}
    loads: dict[str, float] = {}
    for signal, result in zip(target.traffic, forecasts, strict=True):
        _check(signal.name, result.values[row])
        load = float(result.values[row][lead - 1])
        loads[signal.name] = load
        values[signal.served_metric] = MetricValue.decimal(round(load, 6))
    low, high = target.min_replicas, target.max_replicas
    first, step = forecasts[0].first_timestamp, forecasts[0].step_seconds
    if target.capacity is not None:
        capacity = _capacity_plan(target, forecasts[0], quantiles, steps, sizing)
        counts = capacity.counts
        values[REPLICAS] = Decimal(counts[0])
        per_step = [(first + i * step, count) for i, count in enumerate(counts)]
        return Plan(
            values,
            loads,
            counts[0],
            per_step,
            "capacity",
            None,
            setting=capacity.setting,
            bound=capacity.bound,
            median_peak=capacity.median_peak,
            tuning=capacity.tuning,
        )
    assert target.resource is not None
    traffic = np.vstack([result.values[row] for result in forecasts])
    if usage is None:
        assert fit is not None
        usage = scaling.fit_usage(*fit)
    note = ""
    counts = []
    for i in range(steps):
        count, remark = scaling.resource_replicas(
            usage, traffic[:, i : i + lead], target.resource.target, low, high
        )
        note = note or remark
        counts.append(count)
    values[REPLICAS] = Decimal(counts[0])
    per_step = [(first + i * step, count) for i, count in enumerate(counts)]
    return Plan(values, loads, counts[0], per_step, f"resource/{usage.method}", usage, note)


@dataclasses.dataclass(frozen=True)
class _CapacityPlan:
    counts: list[int]
    setting: objective.Setting
    bound: str
    median_peak: float
    tuning: objective.Choice | Exception | None


def _capacity_plan(
    target: ForecastTarget,
    forecast: forecaster.Forecast,
    quantiles: Sequence[float],
    steps: int,
    sizing: Sizing | None,
) -> _CapacityPlan:
    assert target.capacity is not None
    if sizing is None:
        nothing = np.full(2, np.nan)
        sizing = Sizing(objective.manual_setting(target.quantile), nothing, nothing)
    setting = sizing.setting
    tuning: objective.Choice | Exception | None = None
    if sizing.tune and target.objective is not None:
        try:
            tuning = tune(target, sizing.load, sizing.peaks)
        except Exception as exc:  # the target's tuning failed; its sizing stands
            tuning = exc
        if isinstance(tuning, objective.Choice) and tuning.setting is not None:
            setting = tuning.setting
    rows = list(quantiles)
    median, chosen = forecast.values[rows.index(0.5)], forecast.values[rows.index(setting.quantile)]
    for values in (median, chosen):
        _check(target.traffic[0].name, values)
    window = target.window_steps
    median_peak = float(np.max(median[:window]))
    # The bound at the current origin (one step past the history), from the errors known.
    load = np.append(sizing.load, np.nan)
    bounds = objective.lead_window_bounds(
        load,
        np.append(sizing.peaks, median_peak),
        np.array([sizing.load.size]),
        window,
        (setting.quantile,),
    )
    bound = float(bounds.values[0, 0])
    source = "model quantile"
    if math.isfinite(bound):
        source = "model" if bounds.model_share[0] == 1 else "last value"
    # The model's own quantile over the window from each planned step (the end of the
    # horizon cut short): the fallback now, and what the later steps are planned from.
    padded = np.concatenate([chosen, np.full(window - 1, -np.inf)])
    model = sliding_window_view(padded, window)[:steps].max(axis=1)
    seen = sizing.load[np.isfinite(sizing.load)]
    last = np.full(model.size, np.nan)
    last[0] = seen[-1] if seen.size else np.nan
    planned = np.full((1, model.size), np.nan)
    planned[0, 0] = bound
    counts = objective.counts(
        setting,
        objective.Bounds((setting.quantile,), planned, bounds.model_share),
        last,
        target.capacity.per_pod,
        target.min_replicas,
        target.max_replicas,
        fallback=model,
    )
    return _CapacityPlan([int(c) for c in counts], setting, source, median_peak, tuning)


def tune(target: ForecastTarget, load: np.ndarray, peaks: np.ndarray) -> objective.Choice:
    """Tune a capacity target for its objective on the last `objective.TUNING_STEPS` of its
    history (and the warm-up before them), from the calibrated bounds each step had then.

    `load` is the signal's history, `peaks` the peak log at the same steps.
    """
    assert target.capacity is not None
    assert target.objective is not None
    load = np.asarray(load, dtype=np.float64)
    begin = max(1, load.size - objective.TUNING_STEPS - objective.WARMUP_STEPS)
    replayed = np.arange(begin, load.size)
    bounds = objective.lead_window_bounds(load, peaks, replayed, target.window_steps)
    return objective.tune(
        load[begin - 1 :],
        bounds,
        target.capacity.per_pod,
        target.objective,
        objective.tuning_autoscaler(target.step, target.min_replicas, target.max_replicas),
        target.step,
        target.lead_time,
    )


Planner = Callable[[], Plan] | Exception
"""A target's planning step, or why it cannot be planned (its forecast failed)."""


def run_each(steps: Sequence[Callable[[], T] | Exception]) -> list[T | Exception]:
    """Run every target's step (a plan, a backfill); each outcome is that target's result or
    its error."""
    outcomes: list[T | Exception] = []
    for step in steps:
        if isinstance(step, Exception):
            outcomes.append(step)
            continue
        try:
            outcomes.append(step())
        except Exception as exc:  # the caller's per-target guard judges it
            outcomes.append(exc)
    return outcomes


def plan_each(planners: Sequence[Planner]) -> list[Plan | Exception]:
    """Run every target's planning step; each outcome is that target's plan or its error."""
    return run_each(planners)


def _check(signal: str, forecast: np.ndarray) -> None:
    """`ValueRefused` unless every step of the forecast is a load that can be served."""
    bad = np.flatnonzero(~((forecast >= 0) & (forecast < _LIMIT)))
    if len(bad):
        value = float(forecast[bad[0]])
        problem = "NaN is not a number" if math.isnan(value) else value_problem(value)
        raise ValueRefused(f"the forecast of {signal} at step {bad[0] + 1}: {problem}")
