"""The refresh path: history in, predictions out, on an interval, off the request path.

Every cycle (``--refresh-interval``, default 1 min), for all forecast targets at once:

1. **History** (per target, concurrently): resolve rule-defined queries (`adapter.discovery`),
   then fetch only what is new for each query (`adapter.fetch`; the first cycle loads the
   whole window). Samples no load can have are refused as they arrive (`adapter.history`).
2. **Backfill** the peak logs of capacity targets (`TargetState.peaks`: per origin, the
   maximum of the median forecast over the lead window, what a bound is calibrated on):
   past origins the log misses are forecast as a refresh would have forecast them
   (`adapter.backfill.median_peaks`) in the worker thread, newest first, at most
   `BACKFILL_ORIGINS` per cycle over all targets (the targets whose logs hold the fewest
   first), in one hop. A target's backfill failure is its backfill's alone: logged once, tried
   again on its next history point; it never fails the target or the cycle.
3. **Forecast** every traffic signal of every target with something new in one batched call,
   in a dedicated worker thread (`adapter.forecasting`; the network never runs on the event loop).
4. **Plan** each forecast target in that worker thread (`adapter.planning`: for a capacity
   policy the calibrated bound of the lead-window maximum at the setting in use, for a
   resource policy the load at the target's quantile over the lead time, becomes desired
   replicas; the usage model of a resource policy is refitted there every hour; a target
   with an objective is tuned there when due, `TargetState.tuning_due`, at most
   `TUNINGS_PER_CYCLE` targets a cycle); the served values are checked there. Each plan's
   median peak goes into its target's log.
5. **Publish** to the prediction store: values that expire one step plus the prediction TTL
   after the newest history point they were made from (so an outage, which stops the data,
   expires them), or the reason a target failed (its previous values stay until they expire).
   A target with no new point since its last forecast is not forecast again.
6. Optionally write Kapacity's ``<target>-result`` ConfigMap (`adapter.results`).

A target's failure is a `RefreshFailed` carrying its reason, caught in one place
(`Refresher._attempt`) and kept in the target's state: it fails only that target, never the
cycle. Its reason becomes the target's `TargetStatus.last_error` (``refresh_failing`` is 1
while it is set) and the 503 a request gets once the target's last values have expired, and
it is logged when it changes, not every cycle (and once more when the target recovers).
The sizing of a target with an objective is logged the same way: once while the manual
quantile applies for want of history, then once per new setting (a warning when the setting
cannot meet the objective).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import numpy as np

import forecaster
from adapter import backfill, forecasting, objective, planning
from adapter.api import MetricValue
from adapter.config import MAX_HORIZON_STEPS, AdapterConfig, ForecastTarget
from adapter.discovery import RuleQueries
from adapter.errors import RefreshFailed
from adapter.fetch import Fetcher
from adapter.history import Points
from adapter.predictions import PredictionStore, TargetKey
from adapter.prometheus import HistorySource
from adapter.results import ResultWriter, write_result
from adapter.state import TargetState, TargetStatus, carry_over

__all__ = ["CycleReport", "Refresher", "ResultWriter", "TargetStatus"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
T = TypeVar("T")
Published = list[tuple[TargetKey, str, MetricValue, float]]
BACKFILL_ORIGINS = 256
"""Past origins forecast per cycle over all targets to fill the peak logs: about half a
second of the shipped model's time on two cores."""
TUNINGS_PER_CYCLE = 4
"""Targets tuned per cycle at most (about half a second each): targets that become due
together (a fleet whose logs fill in step) are tuned over the next cycles, those never tuned
first."""


@dataclasses.dataclass
class CycleReport:
    seconds: float
    queries: int
    targets: int
    failed: int

    def __str__(self) -> str:
        return (
            f"refreshed {self.targets} targets in {self.seconds:.2f}s with {self.queries} "
            f"queries ({self.failed} failed)"
        )


class Refresher:
    def __init__(
        self,
        source: HistorySource,
        model: forecaster.Forecaster,
        store: PredictionStore,
        *,
        ttl: float,
        clock: Clock = time.time,
        concurrency: int = 8,
        writer: ResultWriter | None = None,
        backfill_origins: int = BACKFILL_ORIGINS,
    ) -> None:
        self._model = model
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._writer = writer
        self._backfill_origins = backfill_origins
        self._fetcher = Fetcher(source, concurrency)
        self._rule_queries = RuleQueries(self._fetcher.series_names)
        self._compute = concurrent.futures.ThreadPoolExecutor(1, "forecast")
        """Forecasting, backfill, planning and tuning: CPU work, off the event loop, one at
        a time."""
        self._states: dict[TargetKey, TargetState] = {}
        self.last_report: CycleReport | None = None

    def configure(self, config: AdapterConfig) -> None:
        """Adopt a new configuration; targets whose queries are unchanged keep their history."""
        self._rule_queries.configure(config.rules)
        self._states = carry_over(self._states, config)
        self._store.configure(config)

    def status(self) -> list[TargetStatus]:
        return [state.status for state in self._states.values()]

    async def run(self, interval: float) -> None:
        """Refresh now, then every `interval` seconds, until cancelled."""
        while True:
            began = time.monotonic()
            try:
                logger.info("%s", await self.refresh())
            except Exception:
                logger.exception("refresh cycle failed")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))

    async def refresh(self) -> CycleReport:
        started = time.perf_counter()
        now = self._clock()
        states = list(self._states.values())
        for state in states:
            state.failure = None
        loaded = await asyncio.gather(
            *(
                self._attempt(state, functools.partial(self._history, state, now))
                for state in states
            )
        )
        queries = sum(got[0] for got in loaded if got is not None)
        await self._backfill(states)
        due = [(state, got[1]) for state, got in zip(states, loaded, strict=True) if got and got[1]]
        quantiles = _quantiles(state.target for state, _ in due)
        forecasts = await forecasting.forecast_each(
            self._model, self._compute, [inputs for _, inputs in due], MAX_HORIZON_STEPS, quantiles
        )
        # Every target's plan in one hop to the worker thread; each outcome is its target's.
        forecast = [
            state
            for (state, _), result in zip(due, forecasts, strict=True)
            if not isinstance(result, RefreshFailed)
        ]
        tuning = self._tunings(forecast, now)
        calls = [
            self._planner(state, result, quantiles, now, tune=state.key in tuning)
            for (state, _), result in zip(due, forecasts, strict=True)
        ]
        plans = await asyncio.get_running_loop().run_in_executor(
            self._compute, planning.plan_each, calls
        )
        planned = await asyncio.gather(
            *(
                self._attempt(
                    state, functools.partial(self._adopt, state, plan, result, quantiles, now)
                )
                for (state, _), result, plan in zip(due, forecasts, plans, strict=True)
            )
        )
        published: Published = [item for values in planned if values for item in values]
        failures = {state.key: str(state.failure) for state in states if state.failure}
        self._store.publish(published, failures)
        for state in states:
            if change := state.settle(now):
                logger.log(change[0], "target %s/%s: %s", *state.key, change[1])
        if self._writer is not None:
            await asyncio.gather(
                *(
                    write_result(self._writer, state.target, *state.result, state.status.sizing)
                    for (state, _), values in zip(due, planned, strict=True)
                    if values and state.result is not None
                )
            )
        report = CycleReport(time.perf_counter() - started, queries, len(states), len(failures))
        self.last_report = report
        return report

    async def _attempt(self, state: TargetState, step: Callable[[], Awaitable[T]]) -> T | None:
        """Run one step of one target: its failure, with the reason, is the target's alone."""
        try:
            return await step()
        except RefreshFailed as exc:
            state.failure = exc
        except Exception as exc:  # a bug or a library's surprise: still this target's alone
            text = f"{type(exc).__name__}: {exc}"
            state.failure = RefreshFailed(f"internal error ({text[:200]})")
            state.failure.__cause__ = exc
            if str(state.failure) != state.logged:
                logger.error("target %s/%s failed", *state.key, exc_info=exc)
        return None

    async def _backfill(self, states: list[TargetState]) -> None:
        """Forecast past origins the peak logs miss, in one hop to the worker thread."""
        ready: list[tuple[TargetState, np.ndarray, np.ndarray, np.ndarray]] = []
        for state in states:
            end = state.data_end()
            if state.peaks is None or end is None or state.failure is not None:
                continue
            times, load = state.signal_history(state.target.traffic[0])
            origins = state.backfill_origins(times)
            state.backfill_pending = bool(origins.size)
            if origins.size and state.backfill_paused != end:
                ready.append((state, times, load, origins))
        if not ready:
            return
        # The logs holding the fewest origins first, each enough to calibrate a bound when
        # the budget is shared by many.
        ready.sort(key=lambda item: item[0].peaks.count() if item[0].peaks else 0)
        budget = self._backfill_origins
        share = budget // len(ready)
        jobs: list[tuple[TargetState, np.ndarray, np.ndarray]] = []
        calls: list[Callable[[], np.ndarray]] = []
        for state, times, load, origins in ready:
            enough = objective.MIN_ERRORS + state.target.window_steps
            taken = origins[: min(max(share, enough), budget)]
            if not taken.size:
                break
            budget -= taken.size
            jobs.append((state, times, taken))
            calls.append(
                functools.partial(
                    backfill.median_peaks,
                    self._model,
                    times,
                    load,
                    taken,
                    load.size,
                    state.target.window_steps,
                )
            )
        outcomes = await asyncio.get_running_loop().run_in_executor(
            self._compute, planning.run_each, calls
        )
        for (state, times, taken), outcome in zip(jobs, outcomes, strict=True):
            self._take_backfill(state, times, taken, outcome)

    def _take_backfill(
        self,
        state: TargetState,
        times: np.ndarray,
        origins: np.ndarray,
        outcome: np.ndarray | Exception,
    ) -> None:
        """Log a backfill's peaks, or its failure (once): that target's backfill's alone."""
        assert state.peaks is not None
        if isinstance(outcome, Exception):
            state.backfill_paused = state.data_end()
            text = f"{type(outcome).__name__}: {outcome}"[:300]
            if text != state.backfill_logged:
                state.backfill_logged = text
                logger.warning(
                    "target %s/%s: cannot forecast past origins for its bound (%s); the "
                    "backfill is tried again on the next history point",
                    *state.key,
                    text,
                )
            return
        state.backfill_logged = ""
        state.peaks.record(int(times[0]) + state.target.step * origins, outcome)
        state.status.peak_origins = state.peaks.count()
        state.backfill_pending = bool(state.backfill_origins(times).size)

    async def _history(self, state: TargetState, now: float) -> tuple[int, list[Points] | None]:
        """Update the target's history: queries sent, and the forecast inputs if due."""
        queries = await self._rule_queries.update(state, now)
        queries += await self._fetcher.update(state, now)
        if state.data_end() == state.planned_end:
            return queries, None  # nothing new since the last forecast
        return queries, forecasting.inputs(state)

    def _tunings(self, states: list[TargetState], now: float) -> set[TargetKey]:
        """The due targets to tune this cycle: at most `TUNINGS_PER_CYCLE`, those without a
        setting chosen first, then those tuned longest ago."""
        due = [state for state in states if state.tuning_due(now)]
        due.sort(
            key=lambda state: (
                state.choice is not None and state.choice.setting is not None,
                state.tuned_at,
            )
        )
        return {state.key for state in due[:TUNINGS_PER_CYCLE]}

    def _planner(
        self,
        state: TargetState,
        result: forecasting.Forecasts | RefreshFailed,
        quantiles: tuple[float, ...],
        now: float,
        *,
        tune: bool = False,
    ) -> planning.Planner:
        """The target's planning step, to run off the event loop (or its forecast's failure)."""
        if isinstance(result, RefreshFailed):
            return result
        target, refit = state.target, state.refit_due(now)
        sizing = None
        if target.capacity is not None and state.peaks is not None:
            times, load = state.signal_history(target.traffic[0])
            sizing = planning.Sizing(
                state.setting(),
                load,
                state.peaks.aligned(int(times[0]), load.size),
                tune=tune,
            )
        return functools.partial(
            planning.plan,
            target,
            result,
            quantiles,
            # The served value is the plan from now; from every step only for a result ConfigMap.
            steps=MAX_HORIZON_STEPS if target.result_configmap and self._writer else 1,
            usage=None if refit else state.usage,
            fit=state.fit_history() if refit else None,
            sizing=sizing,
        )

    async def _adopt(
        self,
        state: TargetState,
        plan: planning.Plan | Exception,
        result: forecasting.Forecasts | RefreshFailed,
        quantiles: tuple[float, ...],
        now: float,
    ) -> Published:
        """Take the target's plan into its state and status; its values to publish."""
        if isinstance(plan, Exception):
            raise plan
        assert not isinstance(result, RefreshFailed)
        target = state.target
        refit = state.usage is not plan.usage
        if refit and plan.usage is not None:
            state.usage, state.fitted_at = plan.usage, now
            summary = plan.usage.summary()
            if summary != state.usage_logged:
                logger.info("target %s/%s: usage model %s", *state.key, summary)
                state.usage_logged = summary
        if plan.note != state.noted:
            if plan.note:
                logger.warning("target %s/%s: %s", *state.key, plan.note)
            state.noted = plan.note
        for signal, forecast in zip(target.traffic, result, strict=True):
            forecasting.track_error(state, signal, forecast, quantiles.index(0.5))
        end = state.data_end()
        assert end is not None
        state.planned_end = end
        if plan.tuning is not None:
            self._take_tuning(state, plan.tuning, now)
        if state.peaks is not None and plan.setting is not None:
            state.peaks.record(np.array([end + target.step]), np.array([plan.median_peak]))
            state.status.peak_origins = state.peaks.count()
            state.status.sizing = state.sizing_status(plan.bound, plan.setting)
            if change := state.sizing_change():
                logger.log(change[0], "target %s/%s: %s", *state.key, change[1])
        # Freshness follows the data, not the clock: when Prometheus stops answering, the
        # newest point stops moving, and the prediction made from it expires.
        expires_at = end + target.step + self._ttl
        if len(plan.per_step) > 1:
            state.result = plan.per_step, expires_at
        state.status.record(plan.policy, plan.replicas, plan.loads, now)
        values = plan.metric_values(target, now)
        return [(state.key, metric, value, expires_at) for metric, value in values.items()]

    def _take_tuning(
        self, state: TargetState, outcome: objective.Choice | Exception, now: float
    ) -> None:
        """Keep a tuning's choice; a failed tuning is logged once and keeps the one before."""
        state.tuned(outcome, now)
        if not isinstance(outcome, Exception):
            state.tuning_logged = ""
            return
        text = f"{type(outcome).__name__}: {outcome}"[:300]
        if text != state.tuning_logged:
            state.tuning_logged = text
            logger.error("target %s/%s: tuning failed", *state.key, exc_info=outcome)

    def close(self) -> None:
        self._fetcher.close()
        self._compute.shutdown(wait=False, cancel_futures=True)


def _quantiles(targets: Iterable[ForecastTarget]) -> tuple[float, ...]:
    """The quantiles to forecast: the median (errors, peak logs), each target's quantile, and
    every quantile a tuning may choose when a due target has an objective."""
    wanted = {0.5}
    for target in targets:
        wanted.add(target.quantile)
        if target.objective is not None:
            wanted.update(objective.QUANTILES)
    return tuple(sorted(wanted))
