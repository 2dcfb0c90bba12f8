"""An immutable table of series values, indexed for the request path.

The HPA asks for one metric in one namespace with a selector that almost always pins a label
to one value (``target=nginx``, KEDA's ``scaledobject.keda.sh/name=web``). The table indexes
each (namespace, metric) by label value so that such a request touches only the series it
selects, whether the table holds 1 series or 100,000; other selectors scan the metric's series.

A table is built once and never changed: a refresh builds a new one and swaps the reference,
so readers on the event loop never see a half-updated table and need no lock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from adapter.api import MetricInfo, MetricValue
from adapter.errors import MetricNotFound
from adapter.selectors import Selector


class _Bucket:
    """The series of one (namespace, metric) and their label index."""

    __slots__ = ("by_label", "series")

    def __init__(self, series: list[MetricValue]) -> None:
        self.series = series
        self.by_label: dict[tuple[str, str], list[int]] = defaultdict(list)
        for position, value in enumerate(series):
            for pair in value.labels.items():
                self.by_label[pair].append(position)

    def select(self, selector: Selector) -> list[MetricValue]:
        candidates: Sequence[MetricValue] = self.series
        for pair in selector.exact_values().items():
            positions = self.by_label.get(pair, [])
            if len(positions) < len(candidates):
                candidates = [self.series[position] for position in positions]
        return [value for value in candidates if selector.matches(value.labels)]


class ValueTable:
    """Series values by (namespace, metric name)."""

    def __init__(self, entries: Iterable[tuple[str, str, MetricValue]] = ()) -> None:
        grouped: dict[tuple[str, str], list[MetricValue]] = defaultdict(list)
        for namespace, metric, value in entries:
            grouped[namespace, metric].append(value)
        self._buckets = {key: _Bucket(series) for key, series in grouped.items()}
        self._metrics = tuple(MetricInfo(name) for name in sorted({m for _, m in grouped}))

    def __len__(self) -> int:
        return sum(len(bucket.series) for bucket in self._buckets.values())

    def metrics(self) -> Sequence[MetricInfo]:
        return self._metrics

    def select(self, namespace: str, metric: str, selector: Selector) -> list[MetricValue]:
        """The matching values; `MetricNotFound` if there are none."""
        bucket = self._buckets.get((namespace, metric))
        if bucket is None:
            raise MetricNotFound(
                f"the server could not find the metric {metric} for namespace {namespace}"
            )
        values = bucket.select(selector)
        if not values:
            raise MetricNotFound(
                f"the server could not find the metric {metric} for namespace {namespace} "
                f"with selector '{selector}'"
            )
        return values
