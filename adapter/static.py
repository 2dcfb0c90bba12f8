"""A provider that serves fixed values from a YAML file (local runs, demos and tests).

It stands in for the forecasting pipeline until that exists and stays useful afterwards: to
try an HPA or KEDA recipe against known numbers, or to pin a value during an incident. The
file is re-read when its contents change; a file with problems is rejected as a whole, with
every problem listed, and the values loaded before keep being served. The file is read and
parsed as `adapter.validation` reads every file: bounded in size, aliases and quoting.

File format::

    values:
      - metric: predicted_replicas      # a valid URL path segment
        namespace: default              # a DNS-1123 label
        labels: {target: nginx}         # valid Kubernetes label keys and values
        value: 3                        # a finite number >= 0
        window: 600                     # optional, seconds (default: none)

This module does blocking file I/O in `load` / `reload_if_changed`; callers on an event loop
run those in a worker thread. `list_metrics` and `get_values` only read memory.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from adapter.api import MetricInfo, MetricValue, value_problem
from adapter.errors import InvalidConfiguration
from adapter.selectors import Selector
from adapter.store import ValueTable
from adapter.validation import (
    MAX_DOCUMENT_BYTES,
    collection_paused,
    is_dns_label,
    is_metric_name,
    load_document,
    quote,
    read_document,
    shorten,
    validate_label,
)

logger = logging.getLogger(__name__)

_ITEM_KEYS = frozenset({"metric", "namespace", "labels", "value", "window"})

Clock = Callable[[], datetime.datetime]


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class StaticProvider:
    """Serves the values of one YAML file (or nothing, without a file)."""

    def __init__(
        self,
        path: Path | None,
        *,
        clock: Clock = _utcnow,
        max_bytes: int = MAX_DOCUMENT_BYTES,
    ) -> None:
        self.path = path
        self._clock = clock
        self._max_bytes = max_bytes
        self._digest = ""  # of the contents last parsed, whether they were served or rejected
        self._table = ValueTable()

    def load(self) -> None:
        """Read the file now; raises `InvalidConfiguration` and keeps the old values."""
        if self.path is None:
            return
        self._digest = ""
        self._load(read_document(self.path, self._max_bytes))

    def reload_if_changed(self) -> bool:
        """Load the file again if its contents changed since they were last parsed.

        Contents that were rejected are not parsed again (nor reported again) until they
        change. A file that cannot be read raises `InvalidConfiguration` on every call.
        """
        if self.path is None:
            return False
        try:
            text = read_document(self.path, self._max_bytes)
        except InvalidConfiguration:
            self._digest = ""  # whatever the file holds when it is back is looked at again
            raise
        if hashlib.sha256(text).hexdigest() == self._digest:
            return False
        self._load(text)
        return True

    def _load(self, text: bytes) -> None:
        assert self.path is not None
        self._digest = hashlib.sha256(text).hexdigest()
        table = parse_values(text, str(self.path), self._clock(), max_bytes=self._max_bytes)
        self._table = table
        logger.info("loaded %d static values from %s", len(table), self.path)

    def list_metrics(self) -> Sequence[MetricInfo]:
        return self._table.metrics()

    def get_values(self, namespace: str, metric: str, selector: Selector) -> Sequence[MetricValue]:
        return self._table.select(namespace, metric, selector)


def parse_values(
    text: bytes,
    source: str,
    loaded_at: datetime.datetime,
    *,
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> ValueTable:
    """A table from the file's text, or `InvalidConfiguration` naming every problem.

    An empty file is a problem; ``values: []`` is a file that serves nothing.
    """
    with collection_paused():
        return _table(load_document(text, source, max_bytes=max_bytes), source, loaded_at)


def _table(document: dict[Any, Any], source: str, loaded_at: datetime.datetime) -> ValueTable:
    problems = [f"{shorten(str(key))}: unknown field" for key in document if key != "values"]
    items = document.get("values", [])
    if not isinstance(items, list):
        raise InvalidConfiguration(source, [*problems, "values: must be a list"])
    entries: list[tuple[str, str, MetricValue]] = []
    seen: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
    for index, item in enumerate(items):
        where = f"values[{index}]"
        entry = _parse_item(item, where, loaded_at, problems)
        if entry is None:
            continue
        identity = (entry[0], entry[1], tuple(sorted(entry[2].labels.items())))
        if identity in seen:
            problems.append(f"{where}: the same metric, namespace and labels appear twice")
        seen.add(identity)
        entries.append(entry)
    if problems:
        raise InvalidConfiguration(source, problems)
    return ValueTable(entries)


def _parse_item(
    item: Any, where: str, loaded_at: datetime.datetime, problems: list[str]
) -> tuple[str, str, MetricValue] | None:
    if not isinstance(item, dict):
        problems.append(f"{where}: must be a mapping")
        return None
    before = len(problems)
    problems.extend(
        f"{where}.{shorten(str(key))}: unknown field" for key in item if key not in _ITEM_KEYS
    )
    metric = item.get("metric")
    if not isinstance(metric, str) or not is_metric_name(metric):
        problems.append(
            f"{where}.metric: must be a non-empty name without '/', '%' or whitespace, "
            f"not '.' or '..' (got {quote(metric)})"
        )
    namespace = item.get("namespace")
    if not is_dns_label(namespace):
        problems.append(f"{where}.namespace: must be a DNS-1123 label (got {quote(namespace)})")
    labels = item.get("labels", {})
    if not isinstance(labels, dict):
        problems.append(f"{where}.labels: must be a mapping of strings")
        labels = {}
    for key, label in labels.items():
        if not isinstance(key, str) or not isinstance(label, str):
            problems.append(f"{where}.labels: keys and values must be strings ({quote(key)})")
            continue
        problems.extend(
            f"{where}.labels.{shorten(key)}: {problem}" for problem in validate_label(key, label)
        )
    value = item.get("value")
    number: Decimal | None = None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"{where}.value: must be a number (got {quote(value)})")
    elif problem := ("NaN is not a value" if math.isnan(value) else value_problem(value)):
        problems.append(f"{where}.value: {problem}")
    else:
        number = MetricValue.decimal(value)
    window = item.get("window")
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, int) or window < 0
    ):
        problems.append(f"{where}.window: must be a whole number of seconds >= 0")
    if len(problems) > before or number is None:
        return None
    assert isinstance(metric, str)
    assert isinstance(namespace, str)
    return namespace, metric, MetricValue(dict(labels), number, loaded_at, window)
