"""Incremental history: first load, short refreshes, gaps, duplicates, refused samples,
counters."""

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


def test_gaps_stay_nan_and_series_are_summed() -> None:
    history = History(STEP, 10)
    start, end = 600, 600 + 9 * STEP
    a = (np.array([600, 660, 780]), np.array([1.0, 2.0, 4.0]))
    b = (np.array([600, 780, 901]), np.array([10.0, 40.0, 7.0]))  # 901 is off the grid
    history.merge(start, end, [a, b])
    _, values = history.window(10 * STEP)
    assert values[0] == 11.0
    assert values[1] == 2.0
    assert np.isnan(values[2])
    assert values[3] == 44.0
    assert np.all(np.isnan(values[4:]))
    assert history.refused == ""


def test_two_values_at_one_timestamp_of_one_series_the_larger_counts() -> None:
    history = History(STEP, 4)
    stamps = np.array([600, 660, 660, 720, 720, 780, 780])
    # Either order, and a NaN twin: the larger number wins; series are summed after.
    a = (stamps, np.array([1.0, 2.0, 99.0, 30.0, 3.0, np.nan, 5.0]))
    b = (np.array([660, 660]), np.array([1.0, 0.5]))
    history.merge(600, 780, [a, b])
    assert list(history.window(4 * STEP)[1]) == [1.0, 100.0, 30.0, 5.0]


def test_samples_no_load_can_have_are_refused_and_kept_out_until_a_clean_answer() -> None:
    history = History(STEP, 6)
    stamps = np.arange(600, 600 + 6 * STEP, STEP)
    for bad, why in (
        (1e308, "1e+308 is beyond 9.22e+15, the most the HPA's 64-bit milli-value holds"),
        (-2.5, "-2.5 is negative"),
        (np.inf, "inf is not a finite number"),
        (-np.inf, "-inf is not a finite number"),
    ):
        values = np.array([1.0, 2.0, bad, np.nan, 5.0, 6.0])
        history.merge(600, 600 + 5 * STEP, [(stamps, values)])
        assert why in history.refused
        kept = history.window(6 * STEP)[1]
        assert list(kept[[0, 1, 4, 5]]) == [1.0, 2.0, 5.0, 6.0]
        assert np.isnan(kept[2])  # kept out: a gap, never the value nor a 0
        assert np.isnan(kept[3])  # NaN is "no value" in PromQL: a gap, not refused
    history.merge(600 + 4 * STEP, 600 + 6 * STEP, [(stamps[-2:] + STEP, np.array([5.0, 6.0]))])
    assert history.refused == ""  # the next clean answer clears it
    # The largest servable value is kept; the first float past it is refused.
    history.merge(600 + 6 * STEP, 600 + 6 * STEP, [(np.array([960]), np.array([9.2e15]))])
    assert history.refused == ""
    history.merge(960, 960, [(np.array([960]), np.array([9223372036854775807 / 1000]))])
    assert "beyond" in history.refused


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


def test_rolls_forward_in_place_on_a_shared_read_only_grid() -> None:
    """A refresh allocates no array per history, and histories on one grid share their
    timestamps (a thousand targets hold their values and one grid), with the same values as a
    history that kept every point."""
    first, second = History(STEP, 10), History(STEP, 10)
    held = first.values
    kept: dict[int, float] = {}
    # A first load, rolls of one, three and nine steps (each re-reading the overlap), then a
    # jump past the whole window (a full load again).
    spans = [(6000 - 9 * STEP, 6000)]
    for shift in (1, 3, 9, 25):
        last = spans[-1][1] + shift * STEP
        spans.append((last - (OVERLAP_STEPS if shift < 10 else 9) * STEP, last))
    for start, end in spans:
        stamps = np.arange(start, end + 1, STEP)
        values = (stamps % 7000).astype(float)
        values[stamps % (4 * STEP) == 0] = np.nan  # gaps
        kept.update(zip(stamps.tolist(), values.tolist(), strict=True))
        for history in (first, second):
            history.merge(start, end, [(stamps, values)])
        times, got = first.window(10 * STEP)
        assert first.values is held  # rolled in place
        assert times[-1] == end
        assert np.array_equal(got, [kept.get(t, np.nan) for t in times.tolist()], equal_nan=True)
        assert first.timestamps is second.timestamps
        assert not times.flags.writeable
