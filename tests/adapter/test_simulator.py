"""The simulated HPA against cases computed by hand (the arithmetic is in each comment).

Unless said otherwise: one sync per step (15 s), target 10 per pod, the metric read without
lag, so ``values[k]`` is what the HPA sees at sync k.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from adapter.simulator import (
    Autoscaler,
    Behavior,
    ExternalMetric,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    protocol_autoscaler,
    reactive_metric,
    score,
    simulate,
)

NAN = math.nan
FAST = (ScalingPolicy(PolicyType.PODS, 100, 15),)  # a scale-up limit that never binds


def run(
    values: list[float],
    initial: int,
    *,
    max_replicas: int = 100,
    min_replicas: int = 1,
    up: ScalingRules | None = None,
    down: ScalingRules | None = None,
) -> list[int]:
    hpa = Autoscaler(max_replicas, min_replicas, Behavior(scale_up=up, scale_down=down))
    trace = simulate([ExternalMetric(np.array(values), 10.0)], hpa, 15, initial_replicas=initial)
    return [int(count) for count in trace.desired]


def test_a_rise_within_the_tolerance_keeps_the_count() -> None:
    # 109 / (10 x 10) = 1.09: within 10 %.
    assert run([109.0], initial=10) == [10]


def test_a_rise_past_the_tolerance_scales_to_the_metric() -> None:
    # 111 / (10 x 10) = 1.11 > 1.1: ceil(111 / 10) = 12 (the limit, 10 + 4 = 14, does not bind).
    assert run([111.0], initial=10) == [12]


def test_a_dip_waits_for_the_scale_down_window() -> None:
    # Sync 0 records 10 (ratio 1). From 15 s the metric asks for 5, but the recommendation of
    # 0 s stays in the 300 s window until 300 s, when it is exactly 300 s old and drops out.
    assert run([100.0] + [50.0] * 20, initial=10) == [10] * 20 + [5]


def test_a_scale_up_window_waits_for_every_recent_recommendation_to_agree() -> None:
    # Window 60 s: the 2 recorded at 0 s holds the count until 60 s, when it drops out.
    up = ScalingRules(stabilization_window_seconds=60, policies=FAST)
    assert run([20.0] + [80.0] * 4, initial=2, up=up) == [2, 2, 2, 2, 8]


def test_max_and_min_replicas_clamp_the_count() -> None:
    # 100 asks for 10; max 5 (the rate limit would allow 2 + 4 = 6).
    assert run([100.0], initial=2, max_replicas=5) == [5]
    # 0 asks for 0; min 3.
    now = ScalingRules(stabilization_window_seconds=0)
    assert run([0.0], initial=6, min_replicas=3, down=now) == [3]
    # Out of range from the start: brought to max without reading the metric (unavailable).
    assert run([NAN], initial=8, max_replicas=5) == [5]


def test_default_scale_up_adds_four_pods_or_doubles_per_15_seconds() -> None:
    # 200 asks for 20. From 1: max(1 + 4, 2) = 5; max(5 + 4, 10) = 10; max(14, 20) = 20.
    assert run([200.0] * 3, initial=1) == [5, 10, 20]


@pytest.mark.parametrize(
    ("policies", "select", "expected"),
    [
        # Pods 4 alone: 1 → 5 → 9 → 13 → 17 → 20.
        ((ScalingPolicy(PolicyType.PODS, 4, 15),), None, [5, 9, 13, 17, 20, 20]),
        # Percent 100 alone: doubles.
        ((ScalingPolicy(PolicyType.PERCENT, 100, 15),), None, [2, 4, 8, 16, 20, 20]),
        # Both, Min: min(5, 2) = 2; min(6, 4) = 4; min(8, 8) = 8; min(12, 16) = 12; 16; 20.
        (None, SelectPolicy.MIN, [2, 4, 8, 12, 16, 20]),
        # Both, Max (the default).
        (None, SelectPolicy.MAX, [5, 10, 20, 20, 20, 20]),
        # Disabled: never up.
        (None, SelectPolicy.DISABLED, [1] * 6),
        # Pods 4 per 60 s: the +4 of 0 s counts until 60 s, when it is exactly 60 s old.
        ((ScalingPolicy(PolicyType.PODS, 4, 60),), None, [5, 5, 5, 5, 9, 9]),
    ],
    ids=["pods", "percent", "min", "max", "disabled", "long-period"],
)
def test_scale_up_policies_limit_a_jump_from_1_to_20(
    policies: tuple[ScalingPolicy, ...] | None, select: SelectPolicy | None, expected: list[int]
) -> None:
    up = ScalingRules(select_policy=select, policies=policies)
    assert run([200.0] * 6, initial=1, up=up) == expected


def test_a_scale_down_policy_removes_one_pod_per_period() -> None:
    down = ScalingRules(0, None, (ScalingPolicy(PolicyType.PODS, 1, 15),))
    assert run([0.0] * 5, initial=5, down=down) == [4, 3, 2, 1, 1]


def test_scale_down_disabled_never_removes_pods() -> None:
    down = ScalingRules(0, SelectPolicy.DISABLED)
    assert run([0.0] * 3, initial=5, down=down) == [5, 5, 5]


def test_the_largest_metric_wins() -> None:
    hpa = Autoscaler(100, behavior=Behavior(scale_up=ScalingRules(policies=FAST)))
    small = ExternalMetric(np.array([30.0]), 10.0)  # 3 pods
    large = ExternalMetric(np.array([70.0]), 10.0)  # 7 pods
    assert simulate([small, large], hpa, 15, initial_replicas=5).desired.tolist() == [7]


def test_a_missing_metric_is_skipped_to_scale_up_but_blocks_a_scale_down() -> None:
    hpa = Autoscaler(
        100, behavior=Behavior(ScalingRules(policies=FAST), ScalingRules(0)), sync_period_seconds=15
    )
    missing = ExternalMetric(np.array([NAN, NAN, 10.0]), 10.0)
    other = ExternalMetric(np.array([100.0, 10.0, 10.0]), 10.0)
    # 0 s: the other asks 10 > 4 → 10. 15 s: it asks 1 < 10 with one metric missing → no
    # decision. 30 s: both valid, both ask 1 → 1.
    trace = simulate([missing, other], hpa, 15, initial_replicas=4)
    assert trace.desired.tolist() == [10, 10, 1]
    assert trace.scale_events == 2


def test_capacity_arrives_after_the_startup_delay_and_the_shortfall_is_counted() -> None:
    # Step 30 s, sync 15 s, start-up 15 s. 20 asks for 2: the second pod is ordered at 0 s and
    # ready at 15 s. Load 20, 10 per pod: short at 0 s (10 < 20), not at 15 s.
    hpa = Autoscaler(10, behavior=Behavior(ScalingRules(policies=FAST)))
    trace = simulate([ExternalMetric(np.array([20.0]), 10.0)], hpa, 30, startup_seconds=15)
    assert trace.ready.tolist() == [1, 2]
    assert trace.provisioned.tolist() == [2, 2]
    steps = trace.per_step()
    assert steps.desired.tolist() == [2]
    assert steps.ready.tolist() == [1.5]
    scores = score(trace, np.array([20.0]), 10.0)
    assert scores.time_above_capacity == 0.5
    assert scores.unserved_share == pytest.approx(10 / 40)  # (20 - 10) over 20 + 20
    assert scores.pod_hours == pytest.approx(4 * 15 / 3600)  # starting pods are paid for


def test_protocol_startup_of_two_steps() -> None:
    # S = 2, per pod 10, capacity 10. Step 0 sees no load (no decision); steps 1-2 see 10 (1
    # pod, ratio 1); step 3 sees 30 → 3 pods, ready at step 5. Short at steps 2, 3 and 4.
    load = np.array([10.0, 10, 30, 30, 30, 30])
    trace = simulate(
        [reactive_metric(load, 10.0, 300)], protocol_autoscaler(), 300, startup_seconds=600
    )
    assert trace.provisioned.tolist() == [1, 1, 1, 3, 3, 3]
    assert trace.ready.tolist() == [1, 1, 1, 1, 1, 3]
    scores = score(trace, load, 10.0)
    assert scores.time_above_capacity == pytest.approx(3 / 6)
    assert scores.unserved_share == pytest.approx(60 / 140)  # 20 short at three steps of 140
    assert scores.pod_hours == pytest.approx(12 * 300 / 3600)
    assert scores.scale_events == 1


def test_the_time_above_a_share_of_the_capacity_is_scored_when_asked_for() -> None:
    # One pod of 10 throughout (min = max = 1): loads 8, 9.5 and 11 are above 7.5 (75 %) at
    # three steps, above 9 (90 %) at two, above the capacity at one.
    load = np.array([5.0, 8, 9.5, 11])
    trace = simulate(
        [reactive_metric(load, 10.0, 300)], protocol_autoscaler(300, 1, 1), 300, startup_seconds=0
    )
    scores = score(trace, load, 10.0, shares=(0.9, 0.75))
    assert scores.time_above_capacity == pytest.approx(1 / 4)
    assert scores.time_above(1.0) == pytest.approx(1 / 4)
    assert scores.time_above(0.9) == pytest.approx(2 / 4)
    assert scores.time_above(0.75) == pytest.approx(3 / 4)
    with pytest.raises(KeyError, match="0.5 of capacity"):
        scores.time_above(0.5)


def test_protocol_on_a_tiny_series() -> None:
    # c = 10, u = 0.5 → 5 per pod; S = 1; 2 pods at first.
    # step 0: no load seen → 2.      step 1: sees 10, 10/(5x2) = 1 → 2.
    # step 2: sees 20, ratio 2 → 4 (2 ready at step 3).   step 3: sees 20, ratio 1 → 4.
    # step 4: sees 5 → 1, held at 4 by step 3's 4.        step 5: sees 5 → 1, nothing holds.
    # Capacity (ready x 10): 20 20 20 40 40 10 against load 10 20 20 5 5 21: short at step 5.
    load = np.array([10.0, 20, 20, 5, 5, 21])
    metric = reactive_metric(load, 5.0, 300)
    trace = simulate([metric], protocol_autoscaler(), 300, startup_seconds=300, initial_replicas=2)
    assert trace.desired.tolist() == [2, 2, 4, 4, 4, 1]
    assert trace.ready.tolist() == [2, 2, 2, 4, 4, 1]
    scores = score(trace, load, 10.0)
    assert scores.time_above_capacity == pytest.approx(1 / 6)
    assert scores.unserved_share == pytest.approx(11 / 81)
    assert scores.pod_hours == pytest.approx((2 + 2 + 4 + 4 + 4 + 1) * 300 / 3600)
    assert scores.scale_events == 2
    # Reading "the last 5 minutes" as the current decision only scales down a step earlier.
    hpa = protocol_autoscaler(hold_steps=0)
    early = simulate([metric], hpa, 300, startup_seconds=300, initial_replicas=2)
    assert early.desired.tolist() == [2, 2, 4, 4, 1, 1]


def test_a_scale_down_removes_starting_pods_first() -> None:
    # 3 ready pods; 0 s asks for 6 (3 start, ready at 60 s); 15 s asks for 4: two starting
    # pods go, the ready three stay.
    hpa = Autoscaler(10, behavior=Behavior(ScalingRules(policies=FAST), ScalingRules(0)))
    metric = ExternalMetric(np.array([60.0, 40.0]), 10.0)
    trace = simulate([metric], hpa, 15, startup_seconds=60, initial_replicas=3)
    assert trace.provisioned.tolist() == [6, 4]
    assert trace.ready.tolist() == [3, 3]


def test_a_step_that_is_not_a_multiple_of_the_sync_period_is_refused() -> None:
    with pytest.raises(ValueError, match="multiple of the sync period"):
        simulate([ExternalMetric(np.array([1.0]), 1.0)], Autoscaler(10), 20)


def test_a_trace_after_its_warm_up_counts_only_the_scale_events_left() -> None:
    # One step of 60 s is four syncs; the counts asked for: 2, 5, then 3 (at once: no window).
    values = np.array([20.0, 50.0, 30.0, 30.0])
    hpa = Autoscaler(10, behavior=Behavior(scale_down=ScalingRules(0, None, None)))
    trace = simulate([ExternalMetric(values, 10.0)], hpa, 60, initial_replicas=2)
    assert trace.per_step().desired.tolist() == [2, 5, 3, 3]
    assert trace.scale_events == 2
    later = trace.after(2)
    assert later.desired.tolist() == [3] * 8
    assert later.scale_events == 1  # 5 -> 3 at the first sync left
    assert trace.after(0) is trace
