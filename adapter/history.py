"""Incremental history: one query's values on a fixed grid, extended with only what is new.

A `History` keeps the last `length` grid points (timestamps that are multiples of `step`) of
one PromQL query, as float64 with NaN where Prometheus had nothing. The first load asks for
the whole span (the source chunks it under Prometheus' 11,000-points-per-series limit); after
that `missing()` asks only for the points after the last one held, plus a small overlap so
that a point Prometheus revised (late scrape, lookback) is refreshed. Merging sums the
series a query returns (one per label set), drops duplicate timestamps and points off the
grid, and rolls the window forward.

For signals that are raw counters, `counter_rate` turns cumulative values into per-second
rates, treating a decrease as a reset (the increase is then the new value itself).

Pure numpy: no queries, no clock; the refresher decides what "now" is.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

OVERLAP_STEPS = 2
"""Points re-read on every refresh: the last ones may have changed since (late scrapes)."""

Points = tuple[np.ndarray, np.ndarray]
"""(timestamps int64, values float64) of one returned series."""


class History:
    """The last `length` points of one query at `step`."""

    def __init__(self, step: int, length: int) -> None:
        self.step = step
        self.length = length
        self.end: int | None = None  # timestamp of the newest grid point held
        self.values = np.full(length, np.nan)

    @property
    def timestamps(self) -> np.ndarray:
        assert self.end is not None
        return self.end - self.step * np.arange(self.length - 1, -1, -1, dtype=np.int64)

    def aligned(self, now: float) -> int:
        """The newest grid point not after `now`."""
        return int(now // self.step) * self.step

    def missing(self, now: float) -> tuple[int, int] | None:
        """(start, end) timestamps to fetch, inclusive; None when up to date."""
        newest = self.aligned(now)
        if self.end is None or newest - self.end >= self.length * self.step:
            return newest - (self.length - 1) * self.step, newest
        if newest <= self.end:
            return None
        return max(
            self.end - OVERLAP_STEPS * self.step, newest - (self.length - 1) * self.step
        ), newest

    def merge(self, start: int, end: int, returned: Iterable[Points]) -> None:
        """Store what a fetch of [start, end] returned; absent points stay/become NaN."""
        count = (end - start) // self.step + 1
        fetched = np.full(count, np.nan)
        seen = np.zeros(count, dtype=bool)
        for timestamps, values in returned:
            offset = timestamps.astype(np.int64) - start
            on_grid = (offset % self.step == 0) & (offset >= 0) & (offset <= end - start)
            index = offset[on_grid] // self.step
            data = values[on_grid].astype(np.float64)
            index, first = np.unique(index, return_index=True)  # duplicates: keep the first
            data = data[first]
            finite = np.isfinite(data)
            index, data = index[finite], data[finite]
            fetched[index] = np.where(seen[index], fetched[index] + data, data)
            seen[index] = True
        self._place(start, end, fetched)

    def _place(self, start: int, end: int, fetched: np.ndarray) -> None:
        if self.end is None or end - self.end >= self.length * self.step:
            self.values = np.full(self.length, np.nan)
        else:
            shift = (end - self.end) // self.step
            if shift > 0:
                self.values = np.concatenate([self.values[shift:], np.full(shift, np.nan)])
        self.end = end if self.end is None else max(self.end, end)
        first = self.length - 1 - (self.end - start) // self.step
        lo = max(0, first)
        self.values[lo : first + len(fetched)] = fetched[lo - first :]

    def window(self, seconds: int) -> Points:
        """The last `seconds` of history (timestamps, values)."""
        keep = min(self.length, max(1, seconds // self.step))
        return self.timestamps[-keep:], self.values[-keep:]


def counter_rate(values: np.ndarray, step: int) -> np.ndarray:
    """Per-second rate of a cumulative counter; a drop is a reset. First point is NaN."""
    rate = np.full(len(values), np.nan)
    if len(values) < 2:
        return rate
    previous, current = values[:-1], values[1:]
    increase = np.where(current >= previous, current - previous, current)
    rate[1:] = increase / step
    return rate
