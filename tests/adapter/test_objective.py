"""Calibrated lead-window bounds, served counts and the choice of a setting for an objective."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adapter import objective
from adapter.objective import Bounds, Evaluation, Objective, Setting
from adapter.simulator import Scores, protocol_autoscaler

STEP = 300


def test_realised_peaks_cover_the_window_and_stop_at_the_end() -> None:
    peaks = objective.realised_peaks(np.array([1.0, 3.0, 2.0, 5.0]), 2)
    assert peaks[:3].tolist() == [3.0, 3.0, 5.0]
    assert math.isnan(peaks[3])


def _daily(size: int, seed: int = 0, noise: float = 5.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(size)
    return 100 + 50 * np.sin(2 * np.pi * t / 288) + rng.normal(0, noise, size)


def test_a_bound_reads_nothing_at_or_after_its_step() -> None:
    load = _daily(1200)
    median = objective.realised_peaks(load, 2)  # a perfect model: only its errors matter
    steps = np.arange(900, 1000)
    before = objective.lead_window_bounds(load, median, steps, 2)
    for t in (900, 950, 997):
        changed = load.copy()
        changed[t:] *= 3  # the future of step t
        changed_median = median.copy()
        changed_median[t + 1 :] = 0  # later forecasts too
        after = objective.lead_window_bounds(changed, changed_median, steps, 2)
        assert np.array_equal(before.values[:, t - 900], after.values[:, t - 900])
        assert not np.array_equal(before.values, after.values)  # the change is visible later


def test_too_few_known_errors_give_no_bound() -> None:
    load = _daily(400)
    median = np.full(400, np.nan)
    # Errors of steps 1 .. t - 2 are known at t: MIN_ERRORS of them first at t = MIN_ERRORS + 2.
    steps = np.array([objective.MIN_ERRORS + 1, objective.MIN_ERRORS + 2])
    bounds = objective.lead_window_bounds(load, median, steps, 2, quantiles=(0.9,))
    assert math.isnan(bounds.values[0, 0])
    assert math.isfinite(bounds.values[0, 1])


def test_the_bound_covers_its_quantile_on_a_stationary_series() -> None:
    load = _daily(3000, seed=1)
    steps = np.arange(1000, 2990)
    bounds = objective.lead_window_bounds(load, np.full(3000, np.nan), steps, 3)
    realised = objective.realised_peaks(load, 3)[steps]
    for quantile, row in zip(bounds.quantiles, bounds.values, strict=True):
        assert abs(float(np.mean(realised <= row)) - quantile) < 0.04


def test_a_good_model_makes_the_bound_tighter_and_a_bad_one_is_ignored() -> None:
    load = _daily(3000, seed=2, noise=2.0)
    steps = np.arange(1000, 2990)
    realised = objective.realised_peaks(load, 2)
    last_value = objective.lead_window_bounds(load, np.full(3000, np.nan), steps, 2)
    rng = np.random.default_rng(3)
    good = objective.lead_window_bounds(load, realised + rng.normal(0, 0.5, 3000), steps, 2)
    bad = objective.lead_window_bounds(load, rng.uniform(0, 300, 3000), steps, 2)
    assert np.all(good.model_share > 0.95)
    assert np.all(bad.model_share < 0.05)
    upper = slice(2, None)  # q >= 0.8, where the width of the error spread shows
    assert np.all(good.values[upper].mean(axis=1) < last_value.values[upper].mean(axis=1))
    # Where the model is useless, the bound is the last value's: no wider.
    assert np.mean(bad.values.mean(axis=1) / last_value.values.mean(axis=1)) < 1.01


def _bounds(values: list[float], quantile: float = 0.9) -> Bounds:
    return Bounds((quantile,), np.array([values]), np.array([0.0]))


def test_counts_take_the_larger_part_and_stay_within_bounds() -> None:
    bounds = _bounds([95.0, np.nan, 10.0, 1000.0])
    last = np.array([150.0, 10.0, 0.0, 10.0])
    served = objective.counts(Setting(0.9, 1.0, 0.5), bounds, last, 10.0, 1, 50)
    # forecast part ceil(95/10)=10, reactive ceil(150/5)=30; unknown bound: nothing served;
    # an idle load: the minimum; 1000/10 = 100 clamped to 50.
    assert served[0] == 30
    assert math.isnan(served[1])
    assert served[2:].tolist() == [1, 50]
    with_fallback = objective.counts(
        Setting(0.9, 0.5, None), bounds, last, 10.0, 1, 50, fallback=np.full(4, 42.0)
    )
    assert with_fallback.tolist() == [19, 9, 2, 50]


def _scores(above: float, pod_hours: float) -> Scores:
    return Scores(above, above / 10, pod_hours, 0)


def test_choose_takes_the_cheapest_setting_that_met_the_objective() -> None:
    cheap_and_short = Setting(0.5, 1.0, None)
    met_dear = Setting(0.95, 0.7, 0.7)
    met_cheaper = Setting(0.9, 0.85, None)
    evaluation = Evaluation(
        (
            (cheap_and_short, _scores(0.05, 80.0)),
            (met_dear, _scores(0.0, 150.0)),
            (met_cheaper, _scores(0.009, 110.0)),
        ),
        baseline=_scores(0.08, 100.0),
        steps=864,
    )
    choice = objective.choose(evaluation, Objective(0.01))
    assert choice.setting == met_cheaper
    assert choice.met
    assert choice.cost == pytest.approx(1.1)
    assert "q=0.9 u_f=0.85 u_r=none" in choice.reason
    assert "1.10x" in choice.reason
    strict = objective.choose(evaluation, Objective(0.0))
    assert strict.setting == met_dear
    assert strict.met


def test_an_objective_no_setting_met_is_reported_with_the_closest_setting() -> None:
    evaluation = Evaluation(
        ((Setting(0.5, 1.0, None), _scores(0.05, 80.0)), (Setting(0.9, 1, 1), _scores(0.02, 90))),
        baseline=_scores(0.08, 100.0),
        steps=864,
    )
    choice = objective.choose(evaluation, Objective(0.01))
    assert not choice.met
    assert choice.setting == Setting(0.9, 1, 1)
    assert "cannot be met" in choice.reason
    assert "2.00%" in choice.reason


def test_an_objective_with_headroom_is_measured_against_the_share_of_capacity() -> None:
    # Both settings kept the load within capacity; only the dearer one also kept it under
    # 80 % of capacity, which is what a 20 % headroom asks for.
    close = Setting(0.9, 1.0, None)
    roomy = Setting(0.95, 0.7, 0.7)

    def scored(above: float, above_80: float, pod_hours: float) -> Scores:
        return Scores(above, 0.0, pod_hours, 0, ((0.8, above_80),))

    evaluation = Evaluation(
        ((close, scored(0.0, 0.04, 100.0)), (roomy, scored(0.0, 0.0, 130.0))),
        baseline=scored(0.05, 0.1, 100.0),
        steps=864,
    )
    assert objective.choose(evaluation, Objective(0.0)).setting == close
    guarded = objective.choose(evaluation, Objective(0.0, headroom=0.2))
    assert guarded.setting == roomy
    assert guarded.met
    assert "(0.00% above 80% of it)" in guarded.reason
    assert str(Objective(0.01, 0.2)) == "at most 1% of the time above 80% of capacity"
    # A headroom the evaluation did not score is a programming error, not a silent 0.
    with pytest.raises(KeyError):
        objective.choose(evaluation, Objective(0.0, headroom=0.1))


def test_tuning_with_headroom_scores_the_share_it_needs() -> None:
    load = _daily(2000, seed=4)
    bounds = objective.lead_window_bounds(load, np.full(2000, np.nan), np.arange(1, 2000), 2)
    per_pod = float(np.percentile(load, 99)) / 20
    window = slice(2000 - 900, None)
    tuned = Bounds(bounds.quantiles, bounds.values[:, window], bounds.model_share)
    plain, guarded = (
        objective.tune(load[window], tuned, per_pod, goal, protocol_autoscaler(STEP), STEP, STEP)
        for goal in (Objective(0.01), Objective(0.01, headroom=0.2))
    )
    assert plain.expected is not None
    assert guarded.expected is not None
    assert guarded.expected.time_above(0.8) <= 0.01
    assert guarded.expected.pod_hours > plain.expected.pod_hours


def test_too_little_history_leaves_the_manual_quantile() -> None:
    load = _daily(200)
    bounds = Bounds(objective.QUANTILES, np.full((5, 199), 100.0), np.zeros(5))
    choice = objective.tune(
        load, bounds, 10.0, Objective(0.01), protocol_autoscaler(STEP), STEP, STEP
    )
    assert choice.setting is None
    assert not choice.met
    assert "too little history" in choice.reason
    assert "manual quantile" in choice.reason


def test_tuning_replays_the_history_and_meets_a_reachable_objective() -> None:
    load = _daily(2000, seed=4)
    steps = np.arange(1, 2000)
    bounds = objective.lead_window_bounds(load, np.full(2000, np.nan), steps, 2)
    per_pod = float(np.percentile(load, 99)) / 20
    window = slice(2000 - 900, None)
    tuned = Bounds(bounds.quantiles, bounds.values[:, window], bounds.model_share)
    choice = objective.tune(
        load[window], tuned, per_pod, Objective(0.02), protocol_autoscaler(STEP), STEP, STEP
    )
    assert choice.setting is not None
    assert choice.met
    assert choice.expected is not None
    assert choice.expected.time_above_capacity <= 0.02
    # A tighter objective can only cost as much or more.
    strict = objective.tune(
        load[window], tuned, per_pod, Objective(0.0), protocol_autoscaler(STEP), STEP, STEP
    )
    assert strict.expected is not None
    assert strict.expected.pod_hours >= choice.expected.pod_hours


def test_tuning_skips_the_steps_a_filling_log_has_no_bound_for() -> None:
    load = _daily(700, seed=5)
    values = np.full((5, 699), 150.0)
    values[:, :500] = np.nan  # only the last 199 steps are calibrated: too few to tune on
    bounds = Bounds(objective.QUANTILES, values, np.zeros(5))
    choice = objective.tune(
        load, bounds, 10.0, Objective(0.01), protocol_autoscaler(STEP), STEP, STEP
    )
    assert choice.setting is None
    assert f"of {objective.MIN_TUNING_STEPS} steps" in choice.reason


def test_fill_gaps_carries_the_last_value_forward() -> None:
    filled = objective.fill_gaps(np.array([np.nan, 2.0, np.nan, 4.0]))
    assert filled.tolist() == [2.0, 2.0, 2.0, 4.0]
