"""Incremental history: one query's values on a fixed grid, extended with only what is new.

A `History` keeps the last `length` grid points (timestamps that are multiples of `step`) of
one PromQL query, as float64 with NaN where Prometheus had nothing. The first load asks for
the whole span (the source chunks it under Prometheus' 11,000-points-per-series limit); after
that `missing()` asks only for the points after the last one held, plus a small overlap so
that a point Prometheus revised (late scrape, lookback) is refreshed. Merging sums the
series a query returns (one per label set), drops points off the grid, and rolls the window
forward.

Values are checked as they arrive. Every query the adapter reads is a load, a resource usage
or a replica count, so a sample must be finite, non-negative and within what the HPA can be
served (`adapter.api.value_problem`); one that is not is *refused*: it is kept out of the
history (a gap, like NaN, which in PromQL means "no value") and `refused` says why until an
answer comes back clean, so that the refresher fails the target meanwhile instead of
forecasting from a poisoned series or silently from a thinned one. When one series holds two
values for one timestamp, the larger counts: planning capacity for the larger load never
under-provisions (and of two readings of a counter the larger is the later).

For signals that are raw counters, `counter_rate` turns cumulative values into per-second
rates, treating a decrease as a reset (the increase is then the new value itself).

Memory: a history is one float64 array of `length` values, rolled forward in place; its
timestamps are not stored but made from `end` and `step` when asked, as a read-only array shared
by every history on the same grid (a thousand targets refreshed together ask for one grid).

Pure numpy: no queries, no clock; the refresher decides what "now" is.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np

from adapter.api import MAX_VALUE, value_problem

OVERLAP_STEPS = 2
"""Points re-read on every refresh: the last ones may have changed since (late scrapes)."""

_LIMIT = float(MAX_VALUE)
"""Samples at or above this are refused (see `adapter.api.MAX_VALUE`)."""

Points = tuple[np.ndarray, np.ndarray]
"""(timestamps int64, values float64) of one returned series."""


class History:
    """The last `length` points of one query at `step`."""

    def __init__(self, step: int, length: int) -> None:
        self.step = step
        self.length = length
        self.end: int | None = None  # timestamp of the newest grid point held
        self.values = np.full(length, np.nan)
        self.refused = ""
        """Why the newest answer merged held samples that were refused ('' when clean)."""

    @property
    def timestamps(self) -> np.ndarray:
        """The grid of the values held (int64, read-only: shared with other histories)."""
        assert self.end is not None
        return _grid(self.end, self.step, self.length)

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
        """Store what a fetch of [start, end] returned; absent and refused points stay/become
        NaN, and `refused` tells whether any was refused."""
        count = (end - start) // self.step + 1
        fetched = np.full(count, np.nan)
        refused = ""
        for timestamps, values in returned:
            offset = timestamps.astype(np.int64) - start
            on_grid = (offset % self.step == 0) & (offset >= 0) & (offset <= end - start)
            index = offset[on_grid] // self.step
            data = values[on_grid].astype(np.float64)
            bad = ~np.isnan(data) & ~((data >= 0) & (data < _LIMIT))
            if bad.any():
                refused = refused or value_problem(float(data[bad][0]))
                data = np.where(bad, np.nan, data)
            series = np.full(count, np.nan)
            np.fmax.at(series, index, data)  # duplicates: the larger counts (fmax skips NaN)
            fetched = np.where(np.isnan(fetched), series, fetched + np.nan_to_num(series))
        self.refused = refused
        self._place(start, end, fetched)

    def _place(self, start: int, end: int, fetched: np.ndarray) -> None:
        # In place: a refresh of a thousand histories allocates nothing here.
        if self.end is None or end - self.end >= self.length * self.step:
            self.values[:] = np.nan
        else:
            shift = (end - self.end) // self.step
            if shift > 0:
                self.values[:-shift] = self.values[shift:]
                self.values[-shift:] = np.nan
        self.end = end if self.end is None else max(self.end, end)
        first = self.length - 1 - (self.end - start) // self.step
        lo = max(0, first)
        self.values[lo : first + len(fetched)] = fetched[lo - first :]

    def window(self, seconds: int) -> Points:
        """The last `seconds` of history (timestamps, values)."""
        keep = min(self.length, max(1, seconds // self.step))
        return self.timestamps[-keep:], self.values[-keep:]


@functools.lru_cache(maxsize=16)
def _grid(end: int, step: int, length: int) -> np.ndarray:
    """The `length` timestamps at `step` up to `end`, read-only (callers share it)."""
    times = end - step * np.arange(length - 1, -1, -1, dtype=np.int64)
    times.flags.writeable = False
    return times


def counter_rate(values: np.ndarray, step: int) -> np.ndarray:
    """Per-second rate of a cumulative counter; a drop is a reset. First point is NaN."""
    rate = np.full(len(values), np.nan)
    if len(values) < 2:
        return rate
    previous, current = values[:-1], values[1:]
    increase = np.where(current >= previous, current - previous, current)
    rate[1:] = increase / step
    return rate
