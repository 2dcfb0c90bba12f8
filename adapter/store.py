"""Immutable tables of labelled entries, indexed for the request path.

The HPA asks for one metric in one namespace with a selector that almost always pins a label
to one value (``target=nginx``, KEDA's ``scaledobject.keda.sh/name=web``). A table indexes
each (namespace, metric) by label value so that such a request touches only the entries it
selects, whether the table holds 1 or 100,000; other selectors scan the metric's entries.

A table is built once and never changed: a refresh builds a new one and swaps the reference,
so readers on the event loop never see a half-updated table and need no lock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from adapter.api import MetricInfo, MetricValue
from adapter.errors import MetricNotFound
from adapter.selectors import Selector


class Labelled(Protocol):
    @property
    def labels(self) -> Mapping[str, str]: ...


T = TypeVar("T", bound=Labelled)


class _Bucket(Generic[T]):
    """The entries of one (namespace, metric) and their label index."""

    __slots__ = ("by_label", "entries")

    def __init__(self, entries: list[T]) -> None:
        self.entries = entries
        self.by_label: dict[tuple[str, str], list[int]] = defaultdict(list)
        for position, entry in enumerate(entries):
            for pair in entry.labels.items():
                self.by_label[pair].append(position)

    def select(self, selector: Selector) -> list[T]:
        candidates: Sequence[T] = self.entries
        for pair in selector.exact_values().items():
            positions = self.by_label.get(pair, [])
            if len(positions) < len(candidates):
                candidates = [self.entries[position] for position in positions]
        return [entry for entry in candidates if selector.matches(entry.labels)]


class LabelTable(Generic[T]):
    """Entries by (namespace, metric name)."""

    def __init__(self, rows: Iterable[tuple[str, str, T]] = ()) -> None:
        grouped: dict[tuple[str, str], list[T]] = defaultdict(list)
        for namespace, metric, entry in rows:
            grouped[namespace, metric].append(entry)
        self._buckets = {key: _Bucket(entries) for key, entries in grouped.items()}
        self._metrics = tuple(MetricInfo(name) for name in sorted({m for _, m in grouped}))

    def __len__(self) -> int:
        return sum(len(bucket.entries) for bucket in self._buckets.values())

    def metrics(self) -> Sequence[MetricInfo]:
        return self._metrics

    def select(self, namespace: str, metric: str, selector: Selector) -> list[T]:
        """The matching entries; `MetricNotFound` if there are none."""
        bucket = self._buckets.get((namespace, metric))
        if bucket is None:
            raise MetricNotFound(
                f"the server could not find the metric {metric} for namespace {namespace}"
            )
        entries = bucket.select(selector)
        if not entries:
            raise MetricNotFound(
                f"the server could not find the metric {metric} for namespace {namespace} "
                f"with selector '{selector}'"
            )
        return entries


ValueTable = LabelTable[MetricValue]
"""Served values by (namespace, metric): what the static provider holds."""
