"""What the refresher keeps per forecast target between cycles, and what /metrics shows of it.

A `TargetState` holds one target's histories (one per query: each traffic signal, and for a
resource policy the usage and the ready replicas), the PromQL each is read with, the usage
model and when it was fitted, the median forecasts made last (to measure the realised error),
the newest history point the published prediction was made from, and why the target failed
this cycle. `TargetStatus` is the part /metrics reads. `carry_over` builds the states of a new
configuration and keeps the history of every query that did not change.

Plain data and numpy: no I/O, no clock; `settle` says what to log, the refresher logs it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping

import numpy as np

from adapter import scaling
from adapter.config import AdapterConfig, ForecastTarget, TrafficSignal
from adapter.errors import RefreshFailed, ValueRefused
from adapter.history import History, Points, counter_rate
from adapter.predictions import TargetKey

RESOURCE, READY = "resource", "replicas"
REFIT_SECONDS = 3600
"""How often a resource policy's usage model is fitted again."""
FIT_SECONDS = 7 * 86400
"""History the usage model is fitted on: a week holds every daily and weekly load level, and
the resource and replica queries need not load the forecaster's full 14 days."""


@dataclasses.dataclass
class TargetStatus:
    """What /metrics shows per target."""

    namespace: str
    name: str
    last_success: float = math.nan
    last_error: str = ""
    """Why the target's last refresh failed ('' once one succeeds): ``refresh_failing`` is 1
    while it is set, and a request told 503 reads the same reason."""
    predicted_replicas: float = math.nan
    predicted_load: dict[str, float] = dataclasses.field(default_factory=dict)
    actual_load: dict[str, float] = dataclasses.field(default_factory=dict)
    forecast_error: dict[str, float] = dataclasses.field(default_factory=dict)
    """|actual - median forecast| / |actual| for the newest step that had been forecast."""
    policy: str = ""

    def record(self, policy: str, replicas: int, loads: Mapping[str, float], now: float) -> None:
        """A plan was published at `now`."""
        self.policy, self.predicted_replicas, self.last_success = policy, replicas, now
        self.predicted_load.update(loads)


@dataclasses.dataclass
class TargetState:
    target: ForecastTarget
    histories: dict[str, History]
    queries: dict[str, str]
    status: TargetStatus
    usage: scaling.UsageModel | None = None
    fitted_at: float = -math.inf
    previous: dict[str, dict[int, float]] = dataclasses.field(default_factory=dict)
    planned_end: int | None = None
    """The newest history point the published prediction was made from."""
    result: tuple[list[tuple[int, int]], float] | None = None
    """The last plan from every step, (timestamp, replicas), and when it expires: what a
    result ConfigMap is written from."""
    failure: RefreshFailed | None = None
    """Why the target failed in the current cycle (None while it has not)."""
    logged: str = ""
    """The failure last logged, so that a lasting one is logged once ('' when healthy)."""
    noted: str = ""
    """The planning note last logged."""

    @property
    def key(self) -> TargetKey:
        return self.target.namespace, self.target.name

    def settle(self, now: float) -> tuple[int, str] | None:
        """End the cycle in the status; what to log (level, message) when the target failed
        anew, failed differently, or refreshed again after failing; else None."""
        if self.failure is not None:
            reason = str(self.failure)
            self.status.last_error = reason
            if reason == self.logged:
                return None
            self.logged = reason
            return logging.WARNING, reason
        if self.status.last_success != now:
            return None  # nothing new to forecast: the status stands
        self.status.last_error = ""
        if not self.logged:
            return None
        was, self.logged = self.logged, ""
        return logging.INFO, f"refreshed again (was: {was})"

    def refit_due(self, now: float) -> bool:
        """Whether the usage model of a resource policy is to be fitted (again) at `now`."""
        return self.target.resource is not None and (
            self.usage is None or now - self.fitted_at >= REFIT_SECONDS
        )

    def data_end(self) -> int | None:
        """The newest point every history of the target holds (None before the first load)."""
        ends = [history.end for history in self.histories.values()]
        return None if any(end is None for end in ends) else min(e for e in ends if e is not None)

    def check_refusals(self) -> None:
        """`ValueRefused` while the newest answer of any of the target's queries held samples
        no load can have (they were kept out of its history)."""
        for name, history in self.histories.items():
            if history.refused:
                raise ValueRefused(f"refused samples of {_label(name)}: {history.refused}")

    def signal_history(self, signal: TrafficSignal) -> Points:
        """The signal's load over the history window (a counter as its per-second rate)."""
        history = self.histories[signal_key(signal)]
        if history.end is None:
            return np.zeros(2, dtype=np.int64), np.full(2, np.nan)
        times, values = history.window(self.target.history)
        if signal.counter:
            values = counter_rate(values, self.target.step)
        return times, values

    def fit_history(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of what the usage model is fitted on: usage, ready replicas, and traffic
        (one row per signal), aligned over the last week at most."""
        span = min(self.target.history, FIT_SECONDS)
        usage = self.histories[RESOURCE].window(span)[1].copy()
        ready = self.histories[READY].window(span)[1].copy()
        traffic = np.vstack(
            [self.signal_history(signal)[1][-len(usage) :] for signal in self.target.traffic]
        )
        return usage, ready, traffic


def signal_key(signal: TrafficSignal) -> str:
    return f"signal:{signal.name}"


def carry_over(
    states: Mapping[TargetKey, TargetState], config: AdapterConfig
) -> dict[TargetKey, TargetState]:
    """The states of `config`'s targets; a target whose grid and queries are unchanged keeps
    its history (a query resolved from the rules is re-resolved, and compared, each cycle)."""
    fresh_states: dict[TargetKey, TargetState] = {}
    for target in config.targets:
        key = (target.namespace, target.name)
        old = states.get(key)
        kept_histories: dict[str, History] = {}
        kept_queries: dict[str, str] = {}
        if old is not None and (old.target.step, old.target.history) == (
            target.step,
            target.history,
        ):
            kept_histories, kept_queries = old.histories, old.queries
        fresh = TargetState(target, {}, {}, TargetStatus(target.namespace, target.name))
        length = max(2, target.history // target.step)
        for name, query in _queries(target).items():
            reuse = name in kept_histories and (query is None or kept_queries.get(name) == query)
            size = length if name.startswith("signal:") else min(length, FIT_SECONDS // target.step)
            fresh.histories[name] = (
                kept_histories[name] if reuse else History(target.step, max(2, size))
            )
            if query is not None:
                fresh.queries[name] = query
            elif reuse and name in kept_queries:
                fresh.queries[name] = kept_queries[name]
        fresh_states[key] = fresh
    return fresh_states


def _queries(target: ForecastTarget) -> dict[str, str | None]:
    """History keys of a target and their PromQL (None: resolved from the rules each cycle)."""
    queries: dict[str, str | None] = {signal_key(s): s.query for s in target.traffic}
    if target.resource is not None:
        queries[RESOURCE] = target.resource.query
    if target.replicas_query is not None:
        queries[READY] = target.replicas_query
    return queries


def _label(name: str) -> str:
    if name.startswith("signal:"):
        return name.removeprefix("signal:")
    return {RESOURCE: "the resource usage", READY: "the ready replicas"}.get(name, name)
