"""The scaling benchmark's protocol arithmetic on series small enough to work out by hand.

Each series has 5 days of 5-minute steps: 2 days of history, the 3-day span (864 steps, 72 h)
last. A pod-hour is one pod for 12 steps.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pytest

from adapter import objective
from bench import scaling
from bench.scaling import Candidate, Replay
from forecaster.predictor import Forecast, History
from forecaster.series import Series

DAYS = 5
STEPS = DAYS * 288
SPAN = 864


def replay_of(load: np.ndarray) -> Replay:
    times = 1_609_718_400 + 300 * np.arange(len(load), dtype=np.int64)
    (replay,) = scaling.prepare([Series("hand", times, load.astype(np.float64))])
    return replay


def scores(replay: Replay, candidate: Candidate, startup: int) -> list[float]:
    result = scaling.replay_candidate(replay, candidate, startup)
    return [result.time_above_capacity, result.unserved_share, result.pod_hours]


def by_knobs(replay: Replay, family: scaling.Family, startup: int) -> dict[str, Candidate]:
    return {candidate.knobs: candidate for candidate in family(replay, startup)}


def test_a_constant_load_is_served_by_the_counts_its_utilisation_gives() -> None:
    # Load 40, p99 40: c = 40 / 20 = 2. The replay starts from ceil(40 / (2 x 0.7)) = 29 pods.
    replay = replay_of(np.full(STEPS, 40.0))
    assert replay.capacity == 2.0
    assert scaling.initial_replicas(replay) == 29
    reactive = by_knobs(replay, scaling.reactive_family, 1)
    # u 0.7: 40 / (1.4 x 29) = 0.985 stays within the tolerance: 29 pods all span.
    assert scores(replay, reactive["u=0.7"], 1) == pytest.approx([0, 0, 29 * 72])
    # u 0.5: 40 / (1 x 29) = 1.38 → 40 pods, ordered in the warm-up. u 0.3: ceil(66.7) = 67.
    assert scores(replay, reactive["u=0.5"], 1) == pytest.approx([0, 0, 40 * 72])
    assert scores(replay, reactive["u=0.3"], 2) == pytest.approx([0, 0, 67 * 72])
    # Last value + quantiles: every error is 0, so the forecast is 40: at u 1.0 exactly 20 pods
    # (capacity 40, not above the load 40); at 0.85 ceil(40 / 1.7) = 24.
    last_value = by_knobs(replay, scaling.last_value_family, 1)
    assert scores(replay, last_value["q=0.9 u_f=u_r=1"], 1) == pytest.approx([0, 0, 20 * 72])
    assert scores(replay, last_value["q=0.5 u_f=u_r=0.85"], 1)[2] == pytest.approx(24 * 72)
    oracle = by_knobs(replay, scaling.oracle_family, 2)
    assert scores(replay, oracle["u=1"], 2) == pytest.approx([0, 0, 20 * 72])

    families = (scaling.reactive_family, scaling.last_value_family, scaling.oracle_family)
    per_series = [scaling.replay_series(replay, families, startups=(1,))]
    summaries = {s.knobs: s for s in scaling.summarise(per_series, 1)}
    assert summaries["u=0.7"].cost_mean == 1.0
    assert summaries["u=0.5"].cost_mean == pytest.approx(40 / 29)
    assert summaries["q=0.9 u_f=u_r=1"].cost_median == pytest.approx(20 / 29)


@pytest.mark.parametrize("startup", [1, 2])
def test_a_jump_is_short_for_the_lag_plus_the_startup(startup: int) -> None:
    # 40, then 80 from span step 100 on. p99 of the span is 80: c = 4, per pod at 0.7 = 2.8.
    # 15 pods hold 40 (40 / 42 = 0.95). The jump is seen at step 101, which orders
    # ceil(80 / 2.8) = 29, ready at 101 + S: short at steps 100 .. 100 + S, by 80 - 60 each.
    load = np.full(STEPS, 40.0)
    load[STEPS - SPAN + 100 :] = 80.0
    replay = replay_of(load)
    assert replay.capacity == 4.0
    total = 100 * 40 + 764 * 80
    reactive = by_knobs(replay, scaling.reactive_family, startup)["u=0.7"]
    above, unserved, pod_hours = scores(replay, reactive, startup)
    assert above == pytest.approx((startup + 1) / SPAN)
    assert unserved == pytest.approx((startup + 1) * 20 / total)
    assert pod_hours == pytest.approx((15 * 101 + 29 * 763) / 12)
    # The oracle orders 29 at step 100 - S, to cover steps t .. t + S: never short.
    oracle = by_knobs(replay, scaling.oracle_family, startup)["u=0.7"]
    ordered = 100 - startup
    expected = pytest.approx([0, 0, (15 * ordered + 29 * (SPAN - ordered)) / 12])
    assert scores(replay, oracle, startup) == expected


def test_lead_window_errors_against_the_last_value() -> None:
    # S = 1: errors[j] = max(load[j], load[j + 1]) - load[j - 1].
    load = np.array([1.0, 3, 2, 5, 4, 4, 1])
    errors = scaling.lead_window_errors(load, 1)
    assert np.isnan(errors[[0, 6]]).all()
    assert errors[1:6].tolist() == [2, 2, 3, -1, 0]
    # S = 2: max(load[j .. j + 2]) - load[j - 1].
    assert scaling.lead_window_errors(load, 2)[1:5].tolist() == [4, 2, 3, -1]


def test_error_quantiles_read_only_the_errors_known_before_each_step() -> None:
    load = np.array([1.0, 3, 2, 5, 4, 4, 1])
    # At t = 6 with S = 1, errors j <= 4 are known: 2, 2, 3, -1; a history of 5 steps keeps
    # j >= 2 (j - 1 >= 1): 2, 3, -1.
    wide = scaling.error_quantiles(load, 1, np.array([2, 3, 6]), (0.5, 1.0), history=100)
    assert np.isnan(wide[:, 0]).all()  # at t = 2 only j <= 0 is known: nothing
    assert wide[:, 1].tolist() == [2, 2]
    assert wide[:, 2].tolist() == [2, 3]  # median of -1, 2, 2, 3
    narrow = scaling.error_quantiles(load, 1, np.array([6]), (0.0, 0.5, 0.75), history=5)
    assert narrow[:, 0].tolist() == [-1, 2, 2.5]


def test_error_quantiles_match_numpy_on_full_windows() -> None:
    rng = np.random.default_rng(3)
    load = rng.gamma(2.0, 10.0, 600)
    steps = np.arange(300, 600, 37)
    got = scaling.error_quantiles(load, 2, steps, (0.8, 0.95), history=200)
    errors = scaling.lead_window_errors(load, 2)
    for column, step in enumerate(steps):
        known = errors[step - 200 + 1 : step - 2]
        assert got[:, column] == pytest.approx(np.quantile(known, (0.8, 0.95)))


def test_the_forecast_counts_never_read_the_load_of_their_own_step() -> None:
    rng = np.random.default_rng(7)
    load = rng.gamma(4.0, 10.0, STEPS)
    changed = load.copy()
    cut = STEPS - 300
    changed[cut:] *= 3
    replay, other = replay_of(load), replay_of(changed)
    # The capacity reads the span (as the protocol says); give both the same one.
    other = Replay(other.name, other.load, replay.capacity)
    before = cut - replay.first + 1  # counts of steps up to `cut` read load up to cut - 1
    for mine, theirs in zip(
        scaling.last_value_family(replay, 2), scaling.last_value_family(other, 2), strict=True
    ):
        assert mine.counts is not None
        assert theirs.counts is not None
        assert np.array_equal(mine.counts[:before], theirs.counts[:before])
        assert not np.array_equal(mine.counts, theirs.counts)


def test_forecast_counts_round_up_and_stay_in_range() -> None:
    counts = scaling.forecast_counts(np.array([0.0, 3.0, 3.1, math.nan, 1e9]), 2.0, 0.75)
    assert counts[[0, 1, 2, 4]].tolist() == [0, 2, 3, 200]
    assert math.isnan(counts[3])


def test_the_frontier_takes_the_lowest_shortfall_within_the_budget() -> None:
    def point(knobs: str, above: float, cost: float) -> scaling.Summary:
        return scaling.Summary("f", knobs, above, 0.0, cost, cost)

    points = [point("a", 0.08, 1.0), point("b", 0.05, 1.2), point("c", 0.02, 1.6)]
    assert scaling.frontier(points, 1.1)["f"] == points[0]
    assert scaling.frontier(points, 1.5)["f"] == points[1]
    assert scaling.frontier(points, 0.9)["f"] is None


class RecordingForecaster:
    """Stands in for `forecaster.Forecaster`: records what each call reads; forecasts, for the
    lead steps 0, 1, 2 of every quantile row r, the last value seen + r + the lead step."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.lengths: list[int] = []
        self.last_times: list[int] = []
        self.last_values: list[float] = []

    def forecast_batch(
        self,
        histories: Sequence[History],
        horizon: int,
        quantiles: Sequence[float] = (0.5,),
    ) -> list[Forecast]:
        self.calls.append(len(histories))
        out = []
        for times, values in histories:
            self.lengths.append(len(values))
            self.last_times.append(int(times[-1]))
            self.last_values.append(float(values[-1]))
            rows = float(values[-1]) + np.add.outer(np.arange(len(quantiles)), np.arange(horizon))
            out.append(Forecast(tuple(quantiles), rows, "model", 300, int(times[-1]) + 300))
        return out


def test_the_forecaster_family_forecasts_each_step_from_the_steps_before_it_only() -> None:
    load = np.arange(STEPS, dtype=np.float64) % 500 + 1  # p99 of the span: 495, c = 24.75
    replay = replay_of(load)
    fake = RecordingForecaster()
    family = scaling.ForecasterFamily(lambda: fake, chunk=100)
    one = by_knobs(replay, family, 1)
    two = by_knobs(replay, family, 2)
    # One forecast per step from the lead-in on (here: the series is shorter than the lead-in,
    # so from its third step), in calls of at most 100, shared by S = 1 and S = 2.
    assert scaling.first_origin(replay) == 2
    forecast = np.arange(2, STEPS)
    assert sum(fake.calls) == len(forecast) == STEPS - 2
    assert max(fake.calls) == 100
    # The history of step t ends at t - 1 (its time and its value) and reaches back 14 days at
    # most (here: all of it, less than 14 days).
    assert fake.last_values == load[forecast - 1].tolist()
    assert fake.last_times == replay.times(0, STEPS)[forecast - 1].tolist()
    assert fake.lengths == forecast.tolist()
    steps = np.arange(replay.first, STEPS)
    # Count: the max over the lead window t .. t + S of the forecast (row q=0.9 is row 3:
    # last + 3 + lead step), sized at u_f.
    expected_one = np.ceil((load[steps - 1] + 3 + 1) / (replay.capacity * 0.85))
    expected_two = np.ceil((load[steps - 1] + 3 + 2) / replay.capacity)
    counts_one, counts_two = one["q=0.9 u_f=u_r=0.85"].counts, two["q=0.9 u_f=u_r=1"].counts
    assert counts_one is not None
    assert counts_two is not None
    assert np.array_equal(counts_one, expected_one)
    assert np.array_equal(counts_two, expected_two)
    assert one["q=0.9 u_f=u_r=0.85"].reactive_utilisation == 0.85
    assert len(one) == 15


def test_the_forecaster_family_reads_at_most_14_days() -> None:
    length = 20 * 288
    replay = replay_of(np.arange(length, dtype=np.float64) % 300 + 1)
    fake = RecordingForecaster()
    list(scaling.ForecasterFamily(lambda: fake)(replay, 1))
    # 20 days: the first replayed step has more than 14 days before it.
    assert replay.first > scaling.HISTORY
    assert max(fake.lengths) == scaling.HISTORY
    assert scaling.HISTORY == 14 * 288
    # The first forecast is made the lead-in before the first replayed step.
    assert scaling.first_origin(replay) == replay.first - scaling.LEAD_IN
    assert fake.last_values[0] == replay.load[replay.first - scaling.LEAD_IN - 1]
    assert fake.lengths[-1] == scaling.HISTORY


def _future_changed(replay: Replay, at: int) -> Replay:
    """The same series with every step from `at` on changed (capacity kept)."""
    load = replay.load.copy()
    load[at:] = load[at:] * 10 + 40  # far above any capacity the counts can buy
    return dataclasses.replace(replay, name=f"{replay.name}-changed-{at}", load=load)


@pytest.mark.parametrize("family", [scaling.calibrated_family, scaling.tuned_family])
def test_the_calibrated_and_tuned_families_never_read_ahead(
    family: scaling.Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    length = 12 * 288  # long enough for the whole lead-in: tuning happens from the start
    rng = np.random.default_rng(7)
    t = np.arange(length)
    load = 200 + 100 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 10, length)
    replay = replay_of(load)
    assert scaling.first_origin(replay) > 2
    monkeypatch.setattr(scaling, "forecaster_family", scaling.ForecasterFamily(RecordingForecaster))
    cut = replay.first + scaling.RETUNE_STEPS  # a retuning: it must not read step `cut`
    before = {c.knobs: c.counts for c in family(replay, 1)}
    after = {c.knobs: c.counts for c in family(_future_changed(replay, cut), 1)}
    assert before.keys() == after.keys()
    changed_later = False
    for knobs, counts in before.items():
        other = after[knobs]
        assert counts is not None
        assert other is not None
        # Counts up to the cut (replayed step `cut` is index cut - first) read nothing from it.
        assert np.array_equal(counts[: cut - replay.first + 1], other[: cut - replay.first + 1])
        changed_later |= not np.array_equal(counts, other)
    assert changed_later


def test_the_tuned_family_meets_a_reachable_objective_on_a_regular_series(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    length = 12 * 288
    rng = np.random.default_rng(8)
    t = np.arange(length)
    replay = replay_of(200 + 100 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 10, length))
    monkeypatch.setattr(scaling, "forecaster_family", scaling.ForecasterFamily(RecordingForecaster))
    candidates = {c.knobs: c for c in scaling.tuned_family(replay, 1)}
    assert set(candidates) == {
        f"objective={100 * o:g}% headroom={100 * h:g}%"
        for o in scaling.OBJECTIVES
        for h in scaling.HEADROOMS
    }
    loose = scaling.replay_candidate(replay, candidates["objective=5% headroom=0%"], 1)
    strict = scaling.replay_candidate(replay, candidates["objective=0.5% headroom=0%"], 1)
    guarded = scaling.replay_candidate(replay, candidates["objective=0.5% headroom=20%"], 1)
    assert strict.time_above_capacity <= 0.02
    assert strict.pod_hours >= loose.pod_hours
    assert guarded.pod_hours >= strict.pod_hours  # a margin over the history costs pods
    assert candidates["objective=5% headroom=0%"].reactive_utilisation is None  # folded in


def test_each_tuning_replays_only_the_load_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    length = 12 * 288
    rng = np.random.default_rng(9)
    replay = replay_of(300 + rng.uniform(0, 100, length))  # every value unique: it names its step
    monkeypatch.setattr(scaling, "forecaster_family", scaling.ForecasterFamily(RecordingForecaster))
    seen: list[np.ndarray] = []
    evaluate = objective.evaluate

    def recording(load: np.ndarray, *args: object, **kwargs: object) -> object:
        seen.append(np.asarray(load).copy())
        return evaluate(load, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(objective, "evaluate", recording)
    list(scaling.tuned_family(replay, 1))
    tunings = list(range(replay.first, length, scaling.RETUNE_STEPS))
    assert len(seen) == len(tunings) == 4
    for at, load in zip(tunings, seen, strict=True):
        steps = np.flatnonzero(np.isin(replay.load, load))
        assert steps.size == load.size
        assert steps.max() == at - 1  # up to the step before the tuning, and no further
        assert load.size == objective.TUNING_STEPS + objective.WARMUP_STEPS + 1
