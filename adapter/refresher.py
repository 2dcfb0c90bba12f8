"""The refresh path: history in, predictions out, on an interval, off the request path.

Every cycle (``--refresh-interval``, default 1 min), for all forecast targets at once:

1. **History** (per target, concurrently): resolve rule-defined queries (`adapter.discovery`),
   then fetch only what is new for each query (`adapter.fetch`; the first cycle loads the
   whole window). Samples no load can have are refused as they arrive (`adapter.history`).
2. **Forecast** every traffic signal of every target with something new in one batched call,
   in a dedicated worker thread (`adapter.forecasting`; torch never runs on the event loop).
3. **Plan** each forecast target in that worker thread (`adapter.planning`: the load at the
   target's quantile over [now, now + lead time] becomes desired replicas; the usage model of
   a resource policy is refitted there every hour); the served values are checked there.
4. **Publish** to the prediction store: values that expire one step plus the prediction TTL
   after the newest history point they were made from (so an outage, which stops the data,
   expires them), or the reason a target failed (its previous values stay until they expire).
   A target with no new point since its last forecast is not forecast again.
5. Optionally write Kapacity's ``<target>-result`` ConfigMap (`adapter.results`).

A target's failure is a `RefreshFailed` carrying its reason, caught in one place
(`Refresher._attempt`) and kept in the target's state: it fails only that target, never the
cycle. Its reason becomes the target's `TargetStatus.last_error` (``refresh_failing`` is 1
while it is set) and the 503 a request gets once the target's last values have expired, and
it is logged when it changes, not every cycle (and once more when the target recovers).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import forecaster
from adapter import forecasting, planning
from adapter.api import MetricValue
from adapter.config import MAX_HORIZON_STEPS, AdapterConfig
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
    ) -> None:
        self._model = model
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._writer = writer
        self._fetcher = Fetcher(source, concurrency)
        self._rule_queries = RuleQueries(self._fetcher.series_names)
        self._compute = concurrent.futures.ThreadPoolExecutor(1, "forecast")
        """Forecasting and planning: CPU work, off the event loop, one at a time."""
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
        due = [(state, got[1]) for state, got in zip(states, loaded, strict=True) if got and got[1]]
        quantiles = tuple(sorted({0.5} | {state.target.quantile for state, _ in due}))
        forecasts = await forecasting.forecast_each(
            self._model, self._compute, [inputs for _, inputs in due], MAX_HORIZON_STEPS, quantiles
        )
        # Every target's plan in one hop to the worker thread; each outcome is its target's.
        calls = [
            self._planner(state, result, quantiles, now)
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
                    write_result(self._writer, state.target, *state.result)
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

    async def _history(self, state: TargetState, now: float) -> tuple[int, list[Points] | None]:
        """Update the target's history: queries sent, and the forecast inputs if due."""
        queries = await self._rule_queries.update(state, now)
        queries += await self._fetcher.update(state, now)
        if state.data_end() == state.planned_end:
            return queries, None  # nothing new since the last forecast
        return queries, forecasting.inputs(state)

    def _planner(
        self,
        state: TargetState,
        result: forecasting.Forecasts | RefreshFailed,
        quantiles: tuple[float, ...],
        now: float,
    ) -> planning.Planner:
        """The target's planning step, to run off the event loop (or its forecast's failure)."""
        if isinstance(result, RefreshFailed):
            return result
        target, refit = state.target, state.refit_due(now)
        return functools.partial(
            planning.plan,
            target,
            result,
            quantiles.index(target.quantile),
            # The served value is the plan from now; from every step only for a result ConfigMap.
            steps=MAX_HORIZON_STEPS if target.result_configmap and self._writer else 1,
            usage=None if refit else state.usage,
            fit=state.fit_history() if refit else None,
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
            logger.info("target %s/%s: usage model %s", *state.key, plan.usage.summary())
        if plan.note != state.noted:
            if plan.note:
                logger.warning("target %s/%s: %s", *state.key, plan.note)
            state.noted = plan.note
        for signal, forecast in zip(target.traffic, result, strict=True):
            forecasting.track_error(state, signal, forecast, quantiles.index(0.5))
        end = state.data_end()
        assert end is not None
        state.planned_end = end
        # Freshness follows the data, not the clock: when Prometheus stops answering, the
        # newest point stops moving, and the prediction made from it expires.
        expires_at = end + target.step + self._ttl
        if len(plan.per_step) > 1:
            state.result = plan.per_step, expires_at
        state.status.record(plan.policy, plan.replicas, plan.loads, now)
        values = plan.metric_values(target, now)
        return [(state.key, metric, value, expires_at) for metric, value in values.items()]

    def close(self) -> None:
        self._fetcher.close()
        self._compute.shutdown(wait=False, cancel_futures=True)
