"""Planning: from a target's forecasts to the values it serves. Pure; run off the event loop.

In: the target, its forecasts (one per traffic signal, one row per quantile), the row of the
target's quantile, how many steps to plan from, and for a resource policy the usage model or,
when it is due for its hourly refit, the history to fit it on. Out: a `Plan` — the served
values (``predicted_<signal>``: the load at now + lead time; ``predicted_replicas``: the
policy's count from now, see `adapter.scaling`), the count planned from each step (for a
result ConfigMap), the policy used, the usage model (refitted or as given) and a note.

Every forecast value the plan rests on is checked here, at the edge: it must be finite,
non-negative and within what the HPA's 64-bit milli-value holds (`adapter.api.MAX_VALUE`). One
that is not is `ValueRefused` with the reason: a load is never clamped to 0 and never left for
the API surface to fail on with a 500.

No I/O, no clock, no logging, no shared state: the refresher runs `plan` in a worker thread,
and the usage fit (the costly part) with it.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Callable, Sequence
from decimal import Decimal

import numpy as np

import forecaster
from adapter import scaling
from adapter.api import MAX_VALUE, MetricValue, value_problem
from adapter.config import ForecastTarget
from adapter.errors import ValueRefused
from adapter.predictions import REPLICAS

_LIMIT = float(MAX_VALUE)

FitHistory = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(usage, ready replicas, traffic with one row per signal), aligned."""


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
    row: int,
    *,
    steps: int,
    usage: scaling.UsageModel | None,
    fit: FitHistory | None,
) -> Plan:
    """The plan from `forecasts`; a resource policy without `usage` is fitted on `fit`."""
    lead = target.lead_steps
    values: dict[str, Decimal] = {}
    loads: dict[str, float] = {}
    for signal, result in zip(target.traffic, forecasts, strict=True):
        _check(signal.name, result.values[row])
        load = float(result.values[row][lead - 1])
        loads[signal.name] = load
        values[signal.served_metric] = MetricValue.decimal(round(load, 6))
    traffic = np.vstack([result.values[row] for result in forecasts])
    low, high = target.min_replicas, target.max_replicas
    note = ""
    if target.capacity is not None:
        per_pod = target.capacity.per_pod
        counts = [
            scaling.capacity_replicas(traffic[0, i : i + lead], per_pod, low, high)
            for i in range(steps)
        ]
        policy = "capacity"
    else:
        assert target.resource is not None
        if usage is None:
            assert fit is not None
            usage = scaling.fit_usage(*fit)
        policy = f"resource/{usage.method}"
        counts = []
        for i in range(steps):
            count, remark = scaling.resource_replicas(
                usage, traffic[:, i : i + lead], target.resource.target, low, high
            )
            note = note or remark
            counts.append(count)
    values[REPLICAS] = Decimal(counts[0])
    first, step = forecasts[0].first_timestamp, forecasts[0].step_seconds
    per_step = [(first + i * step, count) for i, count in enumerate(counts)]
    return Plan(values, loads, counts[0], per_step, policy, usage, note)


Planner = Callable[[], Plan] | Exception
"""A target's planning step, or why it cannot be planned (its forecast failed)."""


def plan_each(planners: Sequence[Planner]) -> list[Plan | Exception]:
    """Run every target's planning step; each outcome is that target's plan or its error."""
    outcomes: list[Plan | Exception] = []
    for planner in planners:
        if isinstance(planner, Exception):
            outcomes.append(planner)
            continue
        try:
            outcomes.append(planner())
        except Exception as exc:  # the caller's per-target guard judges it
            outcomes.append(exc)
    return outcomes


def _check(signal: str, forecast: np.ndarray) -> None:
    """`ValueRefused` unless every step of the forecast is a load that can be served."""
    bad = np.flatnonzero(~((forecast >= 0) & (forecast < _LIMIT)))
    if len(bad):
        value = float(forecast[bad[0]])
        problem = "NaN is not a number" if math.isnan(value) else value_problem(value)
        raise ValueRefused(f"the forecast of {signal} at step {bad[0] + 1}: {problem}")
