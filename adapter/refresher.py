"""The refresh path: history in, predictions out, on an interval, off the request path.

Every cycle (``--refresh-interval``, default 1 min), for all forecast targets at once:

1. **Fetch** only what is new for each query (`adapter.history`), concurrently on a small
   thread pool (the Prometheus client is synchronous). The first cycle loads the whole
   history window, chunked; later cycles ask for the last few points.
2. **Forecast** every traffic signal of every target in one batched call to the forecaster,
   in a dedicated worker thread (torch never runs on the event loop).
3. **Plan**: the load at the configured quantile over [now, now + lead time] becomes desired
   replicas through the target's policy (`adapter.scaling`); the usage model of a resource
   policy is refitted from history every hour.
4. **Publish** to the prediction store: values that expire one step plus the prediction TTL
   after the newest history point they were made from (so an outage, which stops the data,
   expires them), or the reason a target failed (its previous values stay until they expire).
   A target with no new point since its last forecast is not forecast again.
5. Optionally write Kapacity's ``<target>-result`` ConfigMap through a `ResultWriter`.

A target's failure (Prometheus down, a query rejected, no data, no usable policy) never stops
the others. The cycle's figures (`CycleReport`) and each target's state (`TargetStatus`) are
kept for /metrics and logs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np

import forecaster
from adapter import rules as rules_module, scaling
from adapter.api import MetricValue
from adapter.config import MAX_HORIZON_STEPS, AdapterConfig, ForecastTarget, TrafficSignal
from adapter.history import History, counter_rate
from adapter.predictions import REPLICAS, PredictionStore, TargetKey
from adapter.prometheus import HistorySource, SourceError

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
REFIT_SECONDS = 3600
FIT_SECONDS = 7 * 86400
"""History the usage model is fitted on: a week holds every daily and weekly load level, and
the resource and replica queries need not load the forecaster's full 14 days."""
DISCOVERY_SECONDS = 600
RESOURCE, READY = "resource", "replicas"


class ResultWriter(Protocol):
    """Writes Kapacity's result ConfigMap (implemented where the Kubernetes client lives)."""

    async def write(self, namespace: str, name: str, data: Mapping[str, str]) -> None: ...


@dataclasses.dataclass
class TargetStatus:
    """What /metrics shows per target."""

    namespace: str
    name: str
    last_success: float = math.nan
    last_error: str = ""
    predicted_replicas: float = math.nan
    predicted_load: dict[str, float] = dataclasses.field(default_factory=dict)
    actual_load: dict[str, float] = dataclasses.field(default_factory=dict)
    forecast_error: dict[str, float] = dataclasses.field(default_factory=dict)
    """|actual - median forecast| / |actual| for the newest step that had been forecast."""
    policy: str = ""


@dataclasses.dataclass
class CycleReport:
    seconds: float
    queries: int
    targets: int
    failed: int


@dataclasses.dataclass
class _State:
    target: ForecastTarget
    histories: dict[str, History]
    queries: dict[str, str]
    usage: scaling.UsageModel | None = None
    fitted_at: float = -math.inf
    status: TargetStatus = dataclasses.field(default_factory=lambda: TargetStatus("", ""))
    previous: dict[str, dict[int, float]] = dataclasses.field(default_factory=dict)
    error: str = ""
    planned_end: int | None = None
    """The newest history point the published prediction was made from."""

    def data_end(self) -> int | None:
        """The newest point every history of the target holds (None before the first load)."""
        ends = [history.end for history in self.histories.values()]
        return None if any(end is None for end in ends) else min(e for e in ends if e is not None)


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
        self._source = source
        self._model = model
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._writer = writer
        self._fetch_pool = concurrent.futures.ThreadPoolExecutor(concurrency, "history")
        self._forecast_pool = concurrent.futures.ThreadPoolExecutor(1, "forecast")
        self._rules: tuple[rules_module.MetricRule, ...] = ()
        self._discovered: dict[int, tuple[float, dict[str, str]]] = {}
        self._states: dict[TargetKey, _State] = {}
        self.last_report: CycleReport | None = None

    # --- configuration -------------------------------------------------------------------

    def configure(self, config: AdapterConfig) -> None:
        """Adopt a new configuration; targets whose queries are unchanged keep their history."""
        self._rules = config.rules
        self._discovered.clear()
        states: dict[TargetKey, _State] = {}
        for target in config.targets:
            key = (target.namespace, target.name)
            old = self._states.get(key)
            grid = (target.step, target.history)
            kept_histories: dict[str, History] = {}
            kept_queries: dict[str, str] = {}
            if old is not None and (old.target.step, old.target.history) == grid:
                kept_histories, kept_queries = old.histories, old.queries
            fresh = _State(target, {}, {}, status=TargetStatus(target.namespace, target.name))
            length = max(2, target.history // target.step)
            for name, query in _queries(target).items():
                reuse = name in kept_histories and (
                    query is None or kept_queries.get(name) == query
                )
                size = (
                    length
                    if name.startswith("signal:")
                    else min(length, FIT_SECONDS // target.step)
                )
                fresh.histories[name] = (
                    kept_histories[name] if reuse else History(target.step, max(2, size))
                )
                if query is not None:
                    fresh.queries[name] = query
                elif reuse and name in kept_queries:  # re-resolved (and compared) each cycle
                    fresh.queries[name] = kept_queries[name]
            states[key] = fresh
        self._states = states
        self._store.configure(config)

    def status(self) -> list[TargetStatus]:
        return [state.status for state in self._states.values()]

    # --- the cycle -------------------------------------------------------------------------

    async def run(self, interval: float) -> None:
        """Refresh now, then every `interval` seconds, until cancelled."""
        while True:
            began = time.monotonic()
            try:
                report = await self.refresh()
                logger.info(
                    "refreshed %d targets in %.2fs with %d queries (%d failed)",
                    report.targets,
                    report.seconds,
                    report.queries,
                    report.failed,
                )
            except Exception:
                logger.exception("refresh cycle failed")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))

    async def refresh(self) -> CycleReport:
        started = time.perf_counter()
        now = self._clock()
        states = list(self._states.values())
        for state in states:
            state.error = ""
        queries = await self._resolve(states, now)
        queries += await self._fetch(states, now)
        failures = await self._plan(states, now)
        for state in states:
            if state.error:
                state.status.last_error = state.error
                logger.warning(
                    "target %s/%s: %s", state.target.namespace, state.target.name, state.error
                )
        report = CycleReport(time.perf_counter() - started, queries, len(states), len(failures))
        self.last_report = report
        return report

    async def _resolve(self, states: Sequence[_State], now: float) -> int:
        """PromQL for rule-defined traffic metrics (series discovery, cached)."""
        issued = 0
        for state in states:
            for signal in state.target.traffic:
                key = _signal_key(signal)
                if signal.query is not None:
                    continue
                try:
                    query, calls = await self._rule_query(state.target, signal, now)
                except SourceError as exc:
                    state.error = f"cannot discover series for {signal.metric}: {exc}"
                    continue
                issued += calls
                if query is None:
                    state.error = f"no rule defines the metric {signal.metric}"
                    continue
                if state.queries.get(key) not in (None, query):
                    state.histories[key] = History(state.target.step, state.histories[key].length)
                state.queries[key] = query
        return issued

    async def _rule_query(
        self, target: ForecastTarget, signal: TrafficSignal, now: float
    ) -> tuple[str | None, int]:
        calls = 0
        loop = asyncio.get_running_loop()
        for index, rule in enumerate(self._rules):
            cached = self._discovered.get(index)
            if cached is None or now - cached[0] > DISCOVERY_SECONDS:
                names = await loop.run_in_executor(
                    self._fetch_pool, self._source.series_names, rules_module.series_selector(rule)
                )
                calls += 1
                cached = (now, rules_module.metric_names(rule, names))
                self._discovered[index] = cached
            series = cached[1].get(signal.metric or "")
            if series is not None:
                query = rules_module.render_query(
                    rule, series, target.namespace, dict(signal.selector)
                )
                return query, calls
        return None, calls

    async def _fetch(self, states: Sequence[_State], now: float) -> int:
        jobs = []
        for state in states:
            if state.error:
                continue
            for name, history in state.histories.items():
                span = history.missing(now)
                query = state.queries.get(name)
                if span is not None and query is not None:
                    jobs.append((state, name, history, query, span))
        results = await asyncio.gather(
            *(self._fetch_one(job[3], job[4], job[2].step) for job in jobs)
        )
        for (state, name, history, _, span), result in zip(jobs, results, strict=True):
            if isinstance(result, SourceError):
                state.error = state.error or f"cannot read history ({name}): {result}"
            else:
                history.merge(span[0], span[1], result)
        return len(jobs)

    async def _fetch_one(
        self, query: str, span: tuple[int, int], step: int
    ) -> list[tuple[np.ndarray, np.ndarray]] | SourceError:
        # The pool's `concurrency` threads bound how many queries run at once.
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._fetch_pool, self._source.query_range, query, span[0], span[1], step
            )
        except SourceError as exc:
            return exc

    async def _plan(self, states: Sequence[_State], now: float) -> dict[TargetKey, str]:
        """Forecast, plan and publish; the failed targets and why."""
        inputs: list[tuple[np.ndarray, np.ndarray]] = []
        owners: list[tuple[_State, TrafficSignal]] = []
        for state in states:
            if state.error or state.data_end() == state.planned_end:
                continue  # failed, or nothing new since the last forecast
            signals = [
                (signal, self._signal_history(state, signal)) for signal in state.target.traffic
            ]
            empty = [
                signal.name for signal, (_, values) in signals if not np.any(np.isfinite(values))
            ]
            if empty:
                state.error = f"no data for {', '.join(empty)} in the history window"
                continue
            for signal, history in signals:
                inputs.append(history)
                owners.append((state, signal))
        quantiles = tuple(sorted({0.5} | {state.target.quantile for state in states}))
        forecasts: list[forecaster.Forecast] = []
        if inputs:
            loop = asyncio.get_running_loop()
            forecasts = await loop.run_in_executor(
                self._forecast_pool,
                self._model.forecast_batch,
                inputs,
                MAX_HORIZON_STEPS,
                quantiles,
            )
        by_state: dict[TargetKey, dict[str, forecaster.Forecast]] = {}
        for (state, signal), result in zip(owners, forecasts, strict=True):
            by_state.setdefault((state.target.namespace, state.target.name), {})[signal.name] = (
                result
            )
        published: list[tuple[TargetKey, str, MetricValue, float]] = []
        writes = []
        for state in states:
            key = (state.target.namespace, state.target.name)
            if state.error or key not in by_state:
                continue
            try:
                values, per_step = self._values(state, by_state[key], quantiles, now)
            except (scaling.PolicyUnavailable, forecaster.ForecasterError) as exc:
                state.error = str(exc)
                continue
            end = state.data_end()
            assert end is not None
            state.planned_end = end
            # Freshness follows the data, not the clock: when Prometheus stops answering, the
            # newest point stops moving, and the prediction made from it expires.
            expires_at = end + state.target.step + self._ttl
            published.extend((key, metric, value, expires_at) for metric, value in values.items())
            state.status.last_success = now
            state.status.last_error = ""
            if state.target.result_configmap and self._writer is not None:
                writes.append(self._write_result(state.target, per_step, expires_at))
        failures = {(s.target.namespace, s.target.name): s.error for s in states if s.error}
        self._store.publish(published, failures)
        if writes:
            await asyncio.gather(*writes)
        return failures

    def _signal_history(
        self, state: _State, signal: TrafficSignal
    ) -> tuple[np.ndarray, np.ndarray]:
        history = state.histories[_signal_key(signal)]
        if history.end is None:
            return np.zeros(2, dtype=np.int64), np.full(2, np.nan)
        times, values = history.window(state.target.history)
        if signal.counter:
            values = counter_rate(values, state.target.step)
        return times, values

    def _values(
        self,
        state: _State,
        forecasts: Mapping[str, forecaster.Forecast],
        quantiles: tuple[float, ...],
        now: float,
    ) -> tuple[dict[str, MetricValue], list[tuple[int, int]]]:
        target = state.target
        row = quantiles.index(target.quantile)
        median = quantiles.index(0.5)
        lead = target.lead_steps
        stamp = datetime.datetime.fromtimestamp(now, datetime.UTC)
        values: dict[str, MetricValue] = {}
        loads = []
        for signal in target.traffic:
            result = forecasts[signal.name]
            load = result.values[row]
            loads.append(load)
            self._track_error(state, signal, result, median)
            values[signal.served_metric] = MetricValue(
                target.signal_labels(signal),
                MetricValue.decimal(round(max(0.0, float(load[lead - 1])), 6)),
                stamp,
                target.lead_time,
            )
            state.status.predicted_load[signal.name] = float(load[lead - 1])
        traffic = np.vstack(loads)
        # The served value is the plan from now; the plan at every step only for a result
        # ConfigMap (planning runs on the event loop: no more of it than is used).
        planned = traffic.shape[1] if target.result_configmap and self._writer is not None else 1
        replicas, per_step = self._replicas(state, traffic, planned, now)
        values[REPLICAS] = MetricValue(
            target.labels, MetricValue.decimal(replicas), stamp, target.lead_time
        )
        state.status.predicted_replicas = replicas
        first = forecasts[target.traffic[0].name].first_timestamp
        return values, [(first + i * target.step, n) for i, n in enumerate(per_step)]

    def _replicas(
        self, state: _State, traffic: np.ndarray, planned: int, now: float
    ) -> tuple[int, list[int]]:
        """Replicas planned from each of the first `planned` steps: the served count (from now)
        and every planned count."""
        target = state.target
        lead = target.lead_steps
        low, high = target.min_replicas, target.max_replicas
        if target.capacity is not None:
            per_pod = target.capacity.per_pod
            state.status.policy = "capacity"
            steps = [
                scaling.capacity_replicas(traffic[0, i : i + lead], per_pod, low, high)
                for i in range(planned)
            ]
            return steps[0], steps
        assert target.resource is not None
        if state.usage is None or now - state.fitted_at >= REFIT_SECONDS:
            state.usage = self._fit(state)
            state.fitted_at = now
        model = state.usage
        state.status.policy = f"resource/{model.method}"
        steps = []
        for i in range(planned):
            count, note = scaling.resource_replicas(
                model, traffic[:, i : i + lead], target.resource.target, low, high
            )
            if note and i == 0:
                logger.warning("target %s/%s: %s", target.namespace, target.name, note)
            steps.append(count)
        return steps[0], steps

    def _fit(self, state: _State) -> scaling.UsageModel:
        target = state.target
        span = min(target.history, FIT_SECONDS)
        usage = state.histories[RESOURCE].window(span)[1]
        ready = state.histories[READY].window(span)[1]
        traffic = np.vstack(
            [self._signal_history(state, signal)[1][-len(usage) :] for signal in target.traffic]
        )
        model = scaling.fit_usage(usage, ready, traffic)
        logger.info(
            "target %s/%s: usage model %s: base %.4g per replica, costs %s (held-out error %.1f%%)",
            target.namespace,
            target.name,
            model.method,
            model.base,
            ", ".join(f"{c:.4g}" for c in model.costs),
            100 * model.held_out_error,
        )
        return model

    def _track_error(
        self, state: _State, signal: TrafficSignal, result: forecaster.Forecast, median: int
    ) -> None:
        times, values = self._signal_history(state, signal)
        finite = np.flatnonzero(np.isfinite(values))
        if len(finite):
            newest = int(finite[-1])
            actual = float(values[newest])
            state.status.actual_load[signal.name] = actual
            predicted = state.previous.get(signal.name, {}).get(int(times[newest]))
            if predicted is not None:
                state.status.forecast_error[signal.name] = abs(actual - predicted) / max(
                    abs(actual), 1e-12
                )
        stamps = result.first_timestamp + result.step_seconds * np.arange(result.values.shape[1])
        state.previous[signal.name] = dict(
            zip(stamps.tolist(), result.values[median].tolist(), strict=True)
        )

    async def _write_result(
        self, target: ForecastTarget, per_step: list[tuple[int, int]], expires_at: float
    ) -> None:
        assert self._writer is not None
        expires = datetime.datetime.fromtimestamp(expires_at, datetime.UTC)
        series = {str(stamp): count for stamp, count in per_step}
        data = {
            "type": "TimeSeries",
            "expireTime": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "timeSeries": json.dumps(series, separators=(",", ":")),
        }
        try:
            await self._writer.write(target.namespace, f"{target.name}-result", data)
        except Exception as exc:  # the sink is optional: never let it fail the refresh
            logger.warning("cannot write %s/%s-result: %s", target.namespace, target.name, exc)

    def close(self) -> None:
        self._fetch_pool.shutdown(wait=False, cancel_futures=True)
        self._forecast_pool.shutdown(wait=False, cancel_futures=True)


def _signal_key(signal: TrafficSignal) -> str:
    return f"signal:{signal.name}"


def _queries(target: ForecastTarget) -> dict[str, str | None]:
    """History keys of a target and their PromQL (None: resolved from the rules each cycle)."""
    queries: dict[str, str | None] = {_signal_key(s): s.query for s in target.traffic}
    if target.resource is not None:
        queries[RESOURCE] = target.resource.query
    if target.replicas_query is not None:
        queries[READY] = target.replicas_query
    return queries
