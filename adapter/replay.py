"""A history source that replays a recorded trace as if it were live (`make run`, demos).

Wall-clock time t reads the trace at ``(t - trace start) mod trace length``, so a 14-day trace
recorded from midnight to midnight on the same weekday repeats seamlessly, keeps its time of
day and weekday, and always offers 14 days of history up to now. Nothing after the clock's
"now" is ever returned. Every query name given at construction serves the same trace.

Synchronous like `PrometheusSource`; no network.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np

from adapter.history import Points
from adapter.prometheus import QueryFailed


class ReplaySource:
    def __init__(
        self,
        timestamps: np.ndarray,
        values: np.ndarray,
        queries: Iterable[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._start = int(timestamps[0])
        self._step = int(timestamps[1] - timestamps[0])
        self._values = np.asarray(values, dtype=np.float64)
        self._queries = frozenset(queries)
        self._clock = clock

    def query_range(self, query: str, start: int, end: int, step: int) -> list[Points]:
        if query not in self._queries:
            raise QueryFailed(
                f"the replay source only serves {sorted(self._queries)}, not {query!r}"
            )
        end = min(end, int(self._clock()))
        if end < start:
            return []
        stamps = np.arange(start, end + 1, step, dtype=np.int64)
        index = ((stamps - self._start) // self._step) % len(self._values)
        return [(stamps, self._values[index])]

    def series_names(self, selector: str) -> list[str]:
        return []
