"""Incremental history: first load, short refreshes, gaps, duplicates, counters."""

from __future__ import annotations

import numpy as np

from adapter.history import OVERLAP_STEPS, History, counter_rate

STEP = 60


def test_first_load_asks_for_the_whole_window_then_only_new_points() -> None:
    history = History(STEP, 100)
    now = 1_000_000.5
    start, end = history.missing(now)  # type: ignore[misc]
    assert end == 1_000_000 - 1_000_000 % STEP
    assert (end - start) // STEP + 1 == 100
    stamps = np.arange(start, end + 1, STEP)
    history.merge(start, end, [(stamps, stamps.astype(float))])
    assert history.missing(now) is None
    later = now + 5 * STEP
    start2, end2 = history.missing(later)  # type: ignore[misc]
    assert end2 == end + 5 * STEP
    assert start2 == end - OVERLAP_STEPS * STEP  # a short query, with a little overlap
    new = np.arange(start2, end2 + 1, STEP)
    history.merge(start2, end2, [(new, new.astype(float))])
    times, values = history.window(100 * STEP)
    assert np.array_equal(values, times.astype(float))
    assert times[-1] == end2


def test_gaps_stay_nan_and_series_are_summed_and_duplicates_dropped() -> None:
    history = History(STEP, 10)
    start, end = 600, 600 + 9 * STEP
    a = (np.array([600, 660, 660, 780]), np.array([1.0, 2.0, 99.0, 4.0]))
    b = (np.array([600, 780, 901]), np.array([10.0, 40.0, 7.0]))  # 901 is off the grid
    history.merge(start, end, [a, b])
    _, values = history.window(10 * STEP)
    assert values[0] == 11.0
    assert values[1] == 2.0  # the duplicate 99 is ignored
    assert np.isnan(values[2])
    assert values[3] == 44.0
    assert np.all(np.isnan(values[4:]))


def test_a_long_outage_reloads_the_whole_window() -> None:
    history = History(STEP, 10)
    history.merge(0, 9 * STEP, [(np.arange(0, 10 * STEP, STEP), np.ones(10))])
    start, end = history.missing(100 * STEP)  # type: ignore[misc]
    assert (end - start) // STEP + 1 == 10
    history.merge(start, end, [])
    assert np.all(np.isnan(history.window(10 * STEP)[1]))


def test_counter_rate_handles_resets() -> None:
    counts = np.array([100.0, 160.0, 220.0, 30.0, 90.0])
    rate = counter_rate(counts, STEP)
    assert np.isnan(rate[0])
    assert np.allclose(rate[1:], [1.0, 1.0, 0.5, 1.0])
