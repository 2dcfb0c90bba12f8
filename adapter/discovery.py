"""Discovery of rule queries: the PromQL of traffic signals named by a rule's metric.

A traffic signal given as ``metric`` (with a selector) instead of ``query`` is read with the
``metricsQuery`` of the first rule whose discovered series provide that metric, as
prometheus-adapter does. Each rule's series are listed from the source at most every
`DISCOVERY_SECONDS` (one call per rule for all targets, cached); every cycle re-renders each
target's query from the cache, and a query that changed starts its history afresh.

Failures are the target's: `SourceError` when the series cannot be listed, `RefreshFailed`
when no rule defines the metric.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from adapter import rules as rules_module
from adapter.errors import RefreshFailed, SourceError
from adapter.history import History
from adapter.state import TargetState, signal_key

DISCOVERY_SECONDS = 600

SeriesNames = Callable[[str], Awaitable[list[str]]]
"""Metric names of the series matching a series selector, asked of the source."""


class RuleQueries:
    def __init__(self, series_names: SeriesNames) -> None:
        self._series_names = series_names
        self._rules: Sequence[rules_module.MetricRule] = ()
        self._cache: dict[int, tuple[float, dict[str, str]]] = {}
        self._lock = asyncio.Lock()  # targets resolve concurrently: list each rule once

    def configure(self, rules: Sequence[rules_module.MetricRule]) -> None:
        self._rules = rules
        self._cache.clear()

    async def update(self, state: TargetState, now: float) -> int:
        """Resolve the target's rule-defined queries; the number of source calls made."""
        calls = 0
        for signal in state.target.traffic:
            if signal.query is not None:
                continue
            key = signal_key(signal)
            metric = signal.metric or ""
            try:
                query, made = await self._query(state, metric, dict(signal.selector), now)
            except SourceError as exc:
                raise type(exc)(f"cannot discover series for {metric}: {exc}") from exc
            calls += made
            if query is None:
                raise RefreshFailed(f"no rule defines the metric {metric}")
            if state.queries.get(key) not in (None, query):
                state.histories[key] = History(state.target.step, state.histories[key].length)
            state.queries[key] = query
        return calls

    async def _query(
        self, state: TargetState, metric: str, selector: dict[str, str], now: float
    ) -> tuple[str | None, int]:
        calls = 0
        for index, rule in enumerate(self._rules):
            async with self._lock:
                cached = self._cache.get(index)
                if cached is None or now - cached[0] > DISCOVERY_SECONDS:
                    names = await self._series_names(rules_module.series_selector(rule))
                    calls += 1
                    cached = (now, rules_module.metric_names(rule, names))
                    self._cache[index] = cached
            series = cached[1].get(metric)
            if series is not None:
                namespace = state.target.namespace
                return rules_module.render_query(rule, series, namespace, selector), calls
        return None, calls
