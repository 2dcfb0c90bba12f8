"""What the refresher keeps per forecast target between cycles, and what /metrics shows of it.

A `TargetState` holds one target's histories (one per query: each traffic signal, and for a
resource policy the usage and the ready replicas), the PromQL each is read with, the usage
model and when it was fitted, the median forecasts made last (to measure the realised error),
the newest history point the published prediction was made from, and why the target failed
this cycle. A capacity target also keeps its `PeakLog` (the maximum of the median forecast
over the lead window made at each recent origin: what its bound is calibrated on,
`adapter.objective`) and, with an objective, the `Choice` its last tuning made.
`TargetStatus` is the part /metrics reads (with `SizingStatus`, also written to the result
ConfigMap). `carry_over` builds the states of a new configuration and keeps the history of
every query that did not change, with the peak log and the choice that rest on it.

Plain data and numpy: no I/O, no clock; `settle` and `sizing_change` say what to log, the
refresher logs it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping

import numpy as np

from adapter import objective, scaling
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
MARGIN_STEPS = 12
"""Origins a peak log holds beyond what calibrating and tuning read."""
RETRY_SECONDS = 3600
"""How soon a tuning that found too little history is tried again, the peak log unchanged."""


class PeakLog:
    """Per origin (a step of the target's grid: the step after the newest history point a
    forecast was made from), the maximum of the median forecast over the lead window; the
    last `length` origins. `known` marks the origins forecast (a NaN value: nothing to
    forecast from)."""

    def __init__(self, step: int, length: int) -> None:
        self.step = step
        self.length = length
        self.end: int | None = None
        """The newest origin held (a timestamp)."""
        self.values = np.full(length, np.nan)
        self.known = np.zeros(length, dtype=bool)

    def record(self, origins: np.ndarray, peaks: np.ndarray) -> None:
        """Log `peaks` at `origins` (timestamps on the grid); the log rolls on to a newer
        origin, and an origin older than the log holds is dropped."""
        origins = np.atleast_1d(np.asarray(origins, dtype=np.int64))
        peaks = np.atleast_1d(np.asarray(peaks, dtype=np.float64))
        if not origins.size:
            return
        newest = int(origins.max())
        if self.end is None or newest - self.end >= self.length * self.step:
            self.values[:] = np.nan
            self.known[:] = False
            self.end = newest if self.end is None else max(self.end, newest)
        elif newest > self.end:
            shift = (newest - self.end) // self.step
            self.values = np.concatenate([self.values[shift:], np.full(shift, np.nan)])
            self.known = np.concatenate([self.known[shift:], np.zeros(shift, dtype=bool)])
            self.end = newest
        back = self.end - origins
        position = self.length - 1 - back // self.step
        keep = (back % self.step == 0) & (position >= 0)
        self.values[position[keep]] = peaks[keep]
        self.known[position[keep]] = True

    def _positions(self, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """For the origins first, first + step, ...: their positions in the log, and which
        of them the log spans."""
        if self.end is None:
            return np.zeros(count, dtype=np.int64), np.zeros(count, dtype=bool)
        origins = first + self.step * np.arange(count, dtype=np.int64)
        position = self.length - 1 - (self.end - origins) // self.step
        inside = (position >= 0) & (position < self.length) & ((self.end - first) % self.step == 0)
        return np.where(inside, position, 0), inside

    def aligned(self, first: int, count: int) -> np.ndarray:
        """The peaks logged at origins first, first + step, ... (`count` of them; NaN where
        none is known): the log on a history's grid."""
        position, inside = self._positions(first, count)
        return np.asarray(np.where(inside, self.values[position], np.nan))

    def unknown(self, first: int, count: int) -> np.ndarray:
        """Which of the origins first, first + step, ... have not been forecast."""
        position, inside = self._positions(first, count)
        return np.asarray(~(inside & self.known[position]))

    def count(self) -> int:
        """Origins forecast."""
        return int(self.known.sum())


def peak_log_length(target: ForecastTarget) -> int:
    """Origins a capacity target's peak log holds: what the bounds of the tuning span are
    calibrated on (`adapter.objective`), the span itself with its warm-up, and a margin."""
    return (
        objective.CALIBRATION_STEPS
        + objective.TUNING_STEPS
        + objective.WARMUP_STEPS
        + target.window_steps
        + MARGIN_STEPS
    )


def backfill_depth(target: ForecastTarget) -> int:
    """Past origins a capacity target's backfill fills: the whole log with an objective (to
    tune), else only what the bound at the current origin is calibrated on."""
    if target.objective is not None:
        return peak_log_length(target) - 1
    return objective.CALIBRATION_STEPS + target.window_steps + MARGIN_STEPS


def origins_to_tune(target: ForecastTarget) -> int:
    """Origins forecast before a tuning can find enough calibrated steps (fewer: not tried)."""
    return (
        objective.MIN_ERRORS
        + target.window_steps
        + objective.WARMUP_STEPS
        + objective.MIN_TUNING_STEPS
    )


@dataclasses.dataclass(frozen=True)
class SizingStatus:
    """How a capacity target's served count is sized: /metrics and the result ConfigMap."""

    quantile: float
    forecast_utilisation: float
    reactive_utilisation: float | None
    """None: no reactive part in the served count."""
    bound: str
    """Where the served bound came from: ``model`` or ``last value`` (calibrated on its
    recent errors, `objective.lead_window_bounds`), or ``model quantile`` (too few known)."""
    objective: float | None = None
    """The objective's share of time above capacity (None: no objective)."""
    headroom: float = 0.0
    """The objective's headroom: the share of capacity it keeps free."""
    tuned: bool = False
    """Whether the setting was tuned for the objective (else the manual quantile)."""
    met: bool | None = None
    """Whether the tuned setting kept the objective over the history it was tuned on."""
    time_above_capacity: float = math.nan
    """The tuned setting's share of time above capacity over that history."""
    cost: float = math.nan
    """Its pod-hours over those of a reactive HPA at `objective.BASELINE_UTILISATION`."""
    reason: str = ""
    """The choice and its figures, or why there is none."""

    @property
    def calibrated(self) -> bool:
        return self.bound != "model quantile"


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
    sizing: SizingStatus | None = None
    """A capacity target's sizing as last published (None: resource policy, or none yet)."""
    peak_origins: float = math.nan
    """Origins in a capacity target's peak log (NaN: resource policy)."""

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
    previous: dict[str, tuple[int, int, np.ndarray]] = dataclasses.field(default_factory=dict)
    """Per signal, the median forecast made last: (its first timestamp, its step, its values)."""
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
    usage_logged: str = ""
    """The usage model last logged (a refit to the same model is not logged again)."""
    peaks: PeakLog | None = None
    """The median's lead-window maximum per recent origin (capacity policy only)."""
    choice: objective.Choice | None = None
    """The last tuning's outcome (a target with an objective)."""
    tuned_at: float = -math.inf
    tuned_with: int = 0
    """Origins the peak log held when the target was last tuned."""
    tuned_early: bool = False
    """The last tuning ran while the backfill was still filling the peak log."""
    backfill_pending: bool = False
    """Whether the peak log misses origins the backfill is to forecast."""
    backfill_paused: int | None = None
    """The history end at which the backfill failed: tried again on a newer point."""
    backfill_logged: str = ""
    """The backfill failure last logged."""
    tuning_logged: str = ""
    """The tuning failure last logged."""
    sizing_logged: str = ""
    """What the sizing last logged was about: a setting and whether it met the objective, or
    that there is none yet."""

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

    def setting(self) -> objective.Setting:
        """The sizing in use: the tuned setting once there is one, else the manual quantile."""
        if self.choice is not None and self.choice.setting is not None:
            return self.choice.setting
        return objective.manual_setting(self.target.quantile)

    def tuning_due(self, now: float) -> bool:
        """Whether a target with an objective is to be tuned at `now`: first when its peak
        log holds enough origins (then again as it grows, until a setting is chosen), once
        more when a tuning on a log still filling finds it filled, and every
        `objective.RETUNE_SECONDS`."""
        if self.target.objective is None or self.peaks is None:
            return False
        known = self.peaks.count()
        if known < origins_to_tune(self.target):
            return False
        if self.choice is None or self.choice.setting is None:
            return known > self.tuned_with or now - self.tuned_at >= RETRY_SECONDS
        return now - self.tuned_at >= objective.RETUNE_SECONDS or (
            self.tuned_early and not self.backfill_pending
        )

    def tuned(self, outcome: objective.Choice | Exception, now: float) -> None:
        """Take a tuning's outcome. A failed one, or one that found too little history after
        a setting was chosen (gaps in the load), keeps the choice before it until the next."""
        self.tuned_at, self.tuned_early = now, self.backfill_pending
        self.tuned_with = self.peaks.count() if self.peaks is not None else 0
        if isinstance(outcome, Exception):
            return
        if outcome.setting is not None or self.choice is None or self.choice.setting is None:
            self.choice = outcome

    def sizing_status(self, bound: str, setting: objective.Setting | None = None) -> SizingStatus:
        """The status of the sizing in use (`setting`, by default the state's), its served
        bound from `bound`."""
        setting, goal = setting or self.setting(), self.target.objective
        base = SizingStatus(setting.quantile, setting.utilisation, setting.reactive, bound)
        if goal is None:
            return base
        share, headroom = goal.max_time_above_capacity, goal.headroom
        choice = self.choice
        if choice is None or choice.setting is None or choice.expected is None:
            return dataclasses.replace(
                base, objective=share, headroom=headroom, reason=self._untuned()
            )
        return dataclasses.replace(
            base,
            objective=share,
            headroom=headroom,
            tuned=True,
            met=choice.met,
            time_above_capacity=choice.expected.time_above_capacity,
            cost=choice.cost,
            reason=choice.reason,
        )

    def _untuned(self) -> str:
        """Why a target with an objective has no setting chosen."""
        manual = f"the manual quantile {self.target.quantile:g} applies"
        need, steps = origins_to_tune(self.target), self.target.history // self.target.step
        if steps <= need:
            return (
                f"too little history to tune on: the history window holds {steps} steps, a "
                f"first tuning needs more than {need}; {manual}"
            )
        if self.choice is not None:
            return self.choice.reason
        known = self.peaks.count() if self.peaks is not None else 0
        return (
            f"too little history to tune on yet ({known} of the {need} past forecasts a first "
            f"tuning needs): {manual}"
        )

    def sizing_change(self) -> tuple[int, str] | None:
        """What to log (level, message) when the sizing of a target with an objective
        changed: a new setting (a warning when it does not meet the objective), or none yet;
        else None."""
        goal = self.target.objective
        if goal is None:
            return None
        choice = self.choice
        if choice is None or choice.setting is None:
            key, level = "manual", logging.INFO
            message = f"{goal}: {self.sizing_status('').reason}"
        elif choice.met:
            key, level = f"{choice.setting} met", logging.INFO
            message = f"sizing for {goal}: {choice.reason}"
        else:
            key, level, message = f"{choice.setting} not met", logging.WARNING, choice.reason
        if key == self.sizing_logged:
            return None
        self.sizing_logged = key
        return level, message

    def backfill_origins(self, times: np.ndarray) -> np.ndarray:
        """The past origins (indices into the signal history `times`: forecast from the
        points before each) the peak log misses, newest first."""
        if self.peaks is None or not times.size:
            return np.zeros(0, dtype=np.int64)
        first = max(1, times.size - backfill_depth(self.target))
        step = self.target.step
        missing = self.peaks.unknown(int(times[0]) + first * step, times.size - first)
        return (first + np.flatnonzero(missing))[::-1]

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
        reused = set()
        for name, query in _queries(target).items():
            reuse = name in kept_histories and (query is None or kept_queries.get(name) == query)
            size = length if name.startswith("signal:") else min(length, FIT_SECONDS // target.step)
            fresh.histories[name] = (
                kept_histories[name] if reuse else History(target.step, max(2, size))
            )
            if reuse:
                reused.add(name)
            if query is not None:
                fresh.queries[name] = query
            elif reuse and name in kept_queries:
                fresh.queries[name] = kept_queries[name]
        if target.capacity is not None:
            _carry_sizing(old, fresh, reused)
        fresh_states[key] = fresh
    return fresh_states


def _carry_sizing(old: TargetState | None, fresh: TargetState, reused: set[str]) -> None:
    """Give a capacity target its peak log: the old one while its signal history and lead
    window stand (a fresh history starts a fresh log), with the choice tuned on it while
    nothing tuning reads changed."""
    target = fresh.target
    keep = (
        old is not None
        and old.peaks is not None
        and all(signal_key(signal) in reused for signal in target.traffic)
        and old.target.window_steps == target.window_steps
    )
    if old is None or old.peaks is None or not keep:
        fresh.peaks = PeakLog(target.step, peak_log_length(target))
        return
    fresh.peaks = old.peaks
    fresh.backfill_logged = old.backfill_logged
    tuned_on = (
        "objective", "capacity", "min_replicas", "max_replicas", "lead_time", "quantile"
    )  # fmt: skip
    if all(getattr(old.target, name) == getattr(target, name) for name in tuned_on):
        fresh.choice, fresh.tuned_at, fresh.tuned_with = old.choice, old.tuned_at, old.tuned_with
        fresh.tuned_early, fresh.sizing_logged = old.tuned_early, old.sizing_logged


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
