"""A simulated ``autoscaling/v2`` HorizontalPodAutoscaler, to replay a load history through.

The replay command and the objective tuning drive it: given the values each external metric
would have served over a history, it answers how many pods the HPA would have asked for, how
many existed (provisioned: ready plus starting) and how many were ready, at every sync of the
controller; `score` turns that into the figures of ``scaling-replay.md`` (time above capacity,
unserved share of load, pod-hours, scale events).

What it models, as the controller does it (names are the functions of
``pkg/controller/podautoscaler`` in kubernetes/kubernetes):

- **Sync period.** One reconcile every ``sync_period_seconds`` (the controller's
  ``--horizontal-pod-autoscaler-sync-period``, 15 s by default). The load history is on a grid
  of ``step_seconds`` (a multiple of the sync period), constant within a step; each metric is
  read ``lag_seconds`` late.
- **External metric, AverageValue target** (``ReplicaCalculator.GetExternalPerPodMetricReplicas``):
  usage ratio = value / (target per pod x current replicas); within the tolerance (``|1 - ratio|
  <= 0.1``, ``--horizontal-pod-autoscaler-tolerance``, or a direction's own ``tolerance``) the
  count stays, else it becomes ceil(value / target per pod). The current replicas are the
  pods that exist, starting ones included (the scale's status replicas).
- **Several metrics** (``HorizontalController.computeReplicasForMetrics``): the largest
  proposal wins. A metric without a value at a sync (``NaN``, or before the history starts) is
  invalid: if every metric is invalid, or some are and the valid ones propose fewer pods than
  now, the sync makes no decision at all (no scale, no recommendation recorded); otherwise the
  invalid ones are skipped.
- **Out of range** (``reconcileAutoscaler``): a count above max or below min is brought back to
  the bound without reading metrics.
- **Behaviour** (``normalizeDesiredReplicasWithBehaviors``): first
  ``stabilizeRecommendationWithBehaviors`` (the raw proposal is recorded; the result is the
  current count held between the minimum of the proposals younger than the scale-up window and
  the maximum of those younger than the scale-down window), then
  ``convertDesiredReplicasWithBehaviorRate`` with ``calculateScaleUpLimitWithScalingRules`` /
  ``calculateScaleDownLimitWithBehaviors``: each policy allows a count from the count at the
  start of its period (now minus what was added, plus what was removed, in the events younger
  than ``periodSeconds``, ``getReplicasChangePerPeriod``): Pods adds or removes ``value``,
  Percent multiplies by ``1 +/- value/100`` (rounded up for scale-up, down for scale-down);
  ``selectPolicy`` Max takes the largest change, Min the smallest, Disabled none; then min/max.
  "Younger than" is strict, as in the controller: a sample exactly one window old is out.
- **Defaults** (``SetDefaults_HorizontalPodAutoscalerBehavior``): scale-up 0 s, Pods 4 and
  Percent 100 per 15 s, Max; scale-down 300 s, Percent 100 per 15 s, Max. A direction left out
  of a user's ``behavior``, or a field left out of a direction, takes its default.
- **Pods** (the ReplicaSet): pods ordered at t are ready at t + ``startup_seconds``, counted
  from the first sync at or after that time. A scale-down removes pods at once, not-ready
  (youngest) ones first.

`protocol_autoscaler` configures the same simulator as the judging protocol (one decision per
5-minute step on the previous step's load, no rate limit, scale-down held at the largest count
of the current and previous step).

Pure: no I/O, no clock, no logging, no event loop. It does not forecast, read Prometheus or
plot; the replay command feeds it metric values and reports what it returns.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "DEFAULT_SCALE_DOWN",
    "DEFAULT_SCALE_UP",
    "Autoscaler",
    "Behavior",
    "ExternalMetric",
    "PolicyType",
    "Scores",
    "ScalingPolicy",
    "ScalingRules",
    "SelectPolicy",
    "StepTrace",
    "Trace",
    "protocol_autoscaler",
    "reactive_metric",
    "score",
    "simulate",
]


class PolicyType(enum.Enum):
    """``HPAScalingPolicy.type``."""

    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(enum.Enum):
    """``HPAScalingRules.selectPolicy``."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


@dataclasses.dataclass(frozen=True)
class ScalingPolicy:
    """``HPAScalingPolicy``: at most `value` pods or percent per `period_seconds`."""

    type: PolicyType
    value: int
    period_seconds: int


@dataclasses.dataclass(frozen=True)
class ScalingRules:
    """``HPAScalingRules`` for one direction; a field left as None takes the default."""

    stabilization_window_seconds: int | None = None
    select_policy: SelectPolicy | None = None
    policies: tuple[ScalingPolicy, ...] | None = None
    tolerance: float | None = None
    """The direction's own tolerance (beta ``HPAConfigurableTolerance``); None: the HPA's."""


DEFAULT_SCALE_UP = ScalingRules(
    stabilization_window_seconds=0,
    select_policy=SelectPolicy.MAX,
    policies=(
        ScalingPolicy(PolicyType.PODS, 4, 15),
        ScalingPolicy(PolicyType.PERCENT, 100, 15),
    ),
)
DEFAULT_SCALE_DOWN = ScalingRules(
    stabilization_window_seconds=300,
    select_policy=SelectPolicy.MAX,
    policies=(ScalingPolicy(PolicyType.PERCENT, 100, 15),),
)


@dataclasses.dataclass(frozen=True)
class Behavior:
    """``HorizontalPodAutoscalerBehavior``; a direction left as None takes the defaults."""

    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


@dataclasses.dataclass(frozen=True)
class Autoscaler:
    """The HPA's spec (bounds, behaviour) and the controller's settings."""

    max_replicas: int
    min_replicas: int = 1
    behavior: Behavior = Behavior()
    sync_period_seconds: int = 15
    """``--horizontal-pod-autoscaler-sync-period``; 15 s by default."""
    tolerance: float = 0.1
    """``--horizontal-pod-autoscaler-tolerance``; 0.1 by default."""

    def problems(self) -> list[str]:
        found = []
        if self.min_replicas < 1:
            found.append(f"min replicas must be at least 1, not {self.min_replicas}")
        if self.max_replicas < self.min_replicas:
            found.append(f"max replicas {self.max_replicas} is below min {self.min_replicas}")
        if self.sync_period_seconds <= 0:
            found.append(f"the sync period must be positive, not {self.sync_period_seconds}")
        for direction, rules in (("scaleUp", self.scale_up), ("scaleDown", self.scale_down)):
            policies = rules.policies or ()
            if not policies and rules.select_policy is not SelectPolicy.DISABLED:
                found.append(f"{direction} needs at least one policy")
            for policy in policies:
                if policy.value <= 0 or policy.period_seconds <= 0:
                    found.append(f"{direction} policy {policy} needs a positive value and period")
        return found

    @property
    def scale_up(self) -> ScalingRules:
        return _resolve(self.behavior.scale_up, DEFAULT_SCALE_UP)

    @property
    def scale_down(self) -> ScalingRules:
        return _resolve(self.behavior.scale_down, DEFAULT_SCALE_DOWN)


def _resolve(given: ScalingRules | None, default: ScalingRules) -> ScalingRules:
    if given is None:
        return default
    return ScalingRules(
        stabilization_window_seconds=(
            default.stabilization_window_seconds
            if given.stabilization_window_seconds is None
            else given.stabilization_window_seconds
        ),
        select_policy=given.select_policy or default.select_policy,
        policies=default.policies if given.policies is None else given.policies,
        tolerance=given.tolerance,
    )


@dataclasses.dataclass(frozen=True)
class ExternalMetric:
    """One ``External`` metric with an ``AverageValue`` target, as served over the history.

    `values` has one value per step of the history (NaN: the metric was unavailable).
    """

    values: np.ndarray
    average_value: float
    """The target per pod."""
    lag_seconds: float = 0.0
    """How late the HPA sees a value: at time t it reads the step holding t - lag."""
    tolerance: float | None = None
    """None: the HPA's tolerance. 0 makes a served count apply as is, which the protocol's
    predictive and oracle parts assume; a real HPA cannot set it per metric."""


def reactive_metric(load: np.ndarray, per_pod: float, step_seconds: int) -> ExternalMetric:
    """The load itself as the HPA's metric, seen one step late (the protocol's reactive HPA)."""
    return ExternalMetric(np.asarray(load, dtype=np.float64), per_pod, lag_seconds=step_seconds)


def protocol_autoscaler(
    step_seconds: int = 300, max_replicas: int = 200, min_replicas: int = 1, hold_steps: int = 1
) -> Autoscaler:
    """The HPA of ``scaling-replay.md``: one decision per step, no rate limit, 10 % tolerance.

    Scale-down stabilisation keeps the largest count proposed over the current step and the
    `hold_steps` before it (the protocol's "last 5 minutes" at a 5-minute grid is the current
    and the previous decision; ``hold_steps=0`` reads it as the current decision only). The
    window is expressed in seconds with the controller's strict cut-off, hence one step more.
    Rate policies cannot be removed from a real HPA; here they are set wide enough never to
    bind (add up to `max_replicas` pods, remove up to 100 %).
    """
    unlimited_up = (ScalingPolicy(PolicyType.PODS, max_replicas, step_seconds),)
    unlimited_down = (ScalingPolicy(PolicyType.PERCENT, 100, step_seconds),)
    return Autoscaler(
        max_replicas=max_replicas,
        min_replicas=min_replicas,
        behavior=Behavior(
            scale_up=ScalingRules(0, SelectPolicy.MAX, unlimited_up),
            scale_down=ScalingRules(
                (hold_steps + 1) * step_seconds, SelectPolicy.MAX, unlimited_down
            ),
        ),
        sync_period_seconds=step_seconds,
        tolerance=0.1,
    )


@dataclasses.dataclass(frozen=True)
class StepTrace:
    """Per step of the history: desired at the step's last sync; pods averaged over the step."""

    desired: np.ndarray
    provisioned: np.ndarray
    ready: np.ndarray


@dataclasses.dataclass(frozen=True)
class Trace:
    """The state after each sync; it holds until the next one."""

    times: np.ndarray
    """Seconds from the start of the history, one per sync."""
    desired: np.ndarray
    """The scale's replica count the HPA set (or kept) at the sync."""
    provisioned: np.ndarray
    """Pods that exist: ready and starting."""
    ready: np.ndarray
    scale_events: int
    """Syncs that changed the replica count."""
    sync_period_seconds: int
    step_seconds: int

    @property
    def syncs_per_step(self) -> int:
        return self.step_seconds // self.sync_period_seconds

    def after(self, steps: int) -> Trace:
        """The trace without its first `steps` steps (a warm-up not to be scored); its scale
        events are the syncs left that changed the count."""
        skip = steps * self.syncs_per_step
        if skip <= 0:
            return self
        changed = self.desired[skip:] != self.provisioned[skip - 1 : -1]
        return dataclasses.replace(
            self,
            times=self.times[skip:],
            desired=self.desired[skip:],
            provisioned=self.provisioned[skip:],
            ready=self.ready[skip:],
            scale_events=int(np.sum(changed)),
        )

    def per_step(self) -> StepTrace:
        shape = (-1, self.syncs_per_step)
        return StepTrace(
            desired=self.desired.reshape(shape)[:, -1],
            provisioned=self.provisioned.reshape(shape).mean(axis=1),
            ready=self.ready.reshape(shape).mean(axis=1),
        )


@dataclasses.dataclass(frozen=True)
class Scores:
    """The figures of ``scaling-replay.md`` for one replay."""

    time_above_capacity: float
    """Share of the time (of steps, at one sync per step) with load > ready pods x capacity."""
    unserved_share: float
    """Load above the ready capacity over all load (0 when there was no load)."""
    pod_hours: float
    """Every provisioned pod, starting ones included."""
    scale_events: int
    time_above_shares: tuple[tuple[float, float], ...] = ()
    """(share of capacity, share of the time the load was above that share of the ready
    capacity), for each share `score` was asked for."""

    def time_above(self, share: float) -> float:
        """Share of the time the load was above `share` of the ready capacity (1: the capacity
        itself); only for a share `score` was asked for."""
        if share == 1.0:
            return self.time_above_capacity
        for known, time in self.time_above_shares:
            if abs(known - share) < 1e-9:
                return time
        raise KeyError(f"no time above {share:g} of capacity was scored")


def score(
    trace: Trace, load: np.ndarray, capacity_per_pod: float, shares: Sequence[float] = ()
) -> Scores:
    """Score a replay against the load it served (one value per step); `shares` asks for the
    time above those shares of the capacity besides the time above it."""
    per_sync = np.repeat(np.asarray(load, dtype=np.float64), trace.syncs_per_step)
    if per_sync.shape != trace.ready.shape:
        raise ValueError(f"{len(load)} load steps for a replay of {trace.per_step().desired.size}")
    capacity = trace.ready * capacity_per_pod
    total = float(per_sync.sum())
    unserved = float(np.maximum(per_sync - capacity, 0.0).sum())
    return Scores(
        time_above_capacity=float(np.mean(per_sync > capacity)),
        unserved_share=unserved / total if total > 0 else 0.0,
        pod_hours=float(trace.provisioned.sum()) * trace.sync_period_seconds / 3600.0,
        scale_events=trace.scale_events,
        time_above_shares=tuple(
            (share, float(np.mean(per_sync > capacity * share))) for share in shares
        ),
    )


def simulate(
    metrics: Sequence[ExternalMetric],
    autoscaler: Autoscaler,
    step_seconds: int,
    startup_seconds: float = 0.0,
    initial_replicas: int | None = None,
) -> Trace:
    """Replay the metrics' values through the HPA, from `initial_replicas` ready pods.

    Raises:
        ValueError: an invalid autoscaler, a step that is not a multiple of the sync period,
            or metrics of different lengths.
    """
    problems = autoscaler.problems()
    sync = autoscaler.sync_period_seconds
    if step_seconds <= 0 or step_seconds % sync:
        problems.append(f"the step {step_seconds}s is not a multiple of the sync period {sync}s")
    lengths = {np.asarray(metric.values).size for metric in metrics}
    if len(lengths) != 1:
        problems.append(f"need at least one metric, all of one length, not lengths {lengths}")
    if problems:
        raise ValueError("; ".join(problems))
    steps = lengths.pop()
    controller = _Controller(autoscaler, metrics, step_seconds)
    replicas = autoscaler.min_replicas if initial_replicas is None else initial_replicas
    ready_at: list[float] = [-math.inf] * replicas  # sorted: the youngest pods last
    count = steps * (step_seconds // sync)
    times = np.arange(count, dtype=np.int64) * sync
    desired = np.empty(count, dtype=np.int64)
    provisioned = np.empty(count, dtype=np.int64)
    ready = np.empty(count, dtype=np.int64)
    for index, now in enumerate(times.tolist()):
        current = len(ready_at)
        wanted = controller.reconcile(float(now), current)
        if wanted > current:
            ready_at.extend([now + startup_seconds] * (wanted - current))
        elif wanted < current:
            del ready_at[wanted:]
        desired[index] = wanted
        provisioned[index] = len(ready_at)
        ready[index] = bisect.bisect_right(ready_at, now)
    return Trace(
        times=times,
        desired=desired,
        provisioned=provisioned,
        ready=ready,
        scale_events=controller.scale_events,
        sync_period_seconds=sync,
        step_seconds=step_seconds,
    )


class _Controller:
    """The HPA's memory for one target: recent recommendations and scale events."""

    def __init__(
        self, autoscaler: Autoscaler, metrics: Sequence[ExternalMetric], step_seconds: int
    ) -> None:
        self._hpa = autoscaler
        self._up = autoscaler.scale_up
        self._down = autoscaler.scale_down
        self._metrics = [
            (np.asarray(metric.values, dtype=np.float64), metric) for metric in metrics
        ]
        self._step = step_seconds
        self._recommendations: list[tuple[float, int]] = []
        self._scale_ups: list[tuple[float, int]] = []
        self._scale_downs: list[tuple[float, int]] = []
        self.scale_events = 0

    def reconcile(self, now: float, current: int) -> int:
        """One sync (``reconcileAutoscaler``): the replica count to set."""
        hpa = self._hpa
        if current > hpa.max_replicas:
            wanted = hpa.max_replicas
        elif current < hpa.min_replicas:
            wanted = hpa.min_replicas
        else:
            proposal = self._proposal(now, current)
            if proposal is None:
                return current
            wanted = self._normalize(now, current, proposal)
        if wanted != current:
            self.scale_events += 1
            events = self._scale_ups if wanted > current else self._scale_downs
            events.append((now, abs(wanted - current)))
        return wanted

    def _proposal(self, now: float, current: int) -> int | None:
        """``computeReplicasForMetrics``: the largest valid proposal, or None for no decision."""
        proposals = []
        invalid = 0
        for values, metric in self._metrics:
            index = math.floor((now - metric.lag_seconds) / self._step)
            value = values[index] if 0 <= index < values.size else math.nan
            if not math.isfinite(value):
                invalid += 1
                continue
            proposals.append(self._metric_replicas(float(value), metric, current))
        if not proposals:
            return None
        largest = max(proposals)
        if invalid and largest < current:
            return None
        return largest

    def _metric_replicas(self, value: float, metric: ExternalMetric, current: int) -> int:
        """``GetExternalPerPodMetricReplicas`` with ``Tolerances.isWithin``."""
        ratio = value / (metric.average_value * current)
        up = _tolerance(metric.tolerance, self._up.tolerance, self._hpa.tolerance)
        down = _tolerance(metric.tolerance, self._down.tolerance, self._hpa.tolerance)
        if 1.0 - down <= ratio <= 1.0 + up:
            return current
        return math.ceil(value / metric.average_value)

    def _normalize(self, now: float, current: int, proposal: int) -> int:
        stabilized = self._stabilize(now, current, proposal)
        hpa = self._hpa
        if stabilized > current:
            limit = max(_policy_limit(current, self._up, self._events(now), 1), current)
            return min(stabilized, hpa.max_replicas, limit)
        if stabilized < current:
            limit = min(_policy_limit(current, self._down, self._events(now), -1), current)
            return max(stabilized, hpa.min_replicas, limit)
        return stabilized

    def _stabilize(self, now: float, current: int, proposal: int) -> int:
        """``stabilizeRecommendationWithBehaviors``."""
        up_window = self._up.stabilization_window_seconds or 0
        down_window = self._down.stabilization_window_seconds or 0
        lowest = highest = proposal
        for at, recommendation in self._recommendations:
            if at > now - up_window:
                lowest = min(lowest, recommendation)
            if at > now - down_window:
                highest = max(highest, recommendation)
        longest = max(up_window, down_window)
        self._recommendations = [r for r in self._recommendations if r[0] > now - longest]
        self._recommendations.append((now, proposal))
        return min(max(current, lowest), highest)

    def _events(self, now: float) -> _Events:
        return _Events(now, self._scale_ups, self._scale_downs)


@dataclasses.dataclass(frozen=True)
class _Events:
    now: float
    ups: list[tuple[float, int]]
    downs: list[tuple[float, int]]

    def period_start_replicas(self, current: int, period_seconds: int) -> int:
        """The count at the start of a policy's period (``getReplicasChangePerPeriod``)."""
        cutoff = self.now - period_seconds
        added = sum(change for at, change in self.ups if at > cutoff)
        removed = sum(change for at, change in self.downs if at > cutoff)
        return current - added + removed


def _policy_limit(current: int, rules: ScalingRules, events: _Events, direction: int) -> int:
    """The furthest count the policies allow now, up (`direction` 1,
    ``calculateScaleUpLimitWithScalingRules``: Percent rounds up) or down (-1,
    ``calculateScaleDownLimitWithBehaviors``: Percent rounds down). ``selectPolicy`` Max takes
    the largest change, Min the smallest."""
    if rules.select_policy is SelectPolicy.DISABLED or not rules.policies:
        return current
    proposed = []
    for policy in rules.policies:
        start = events.period_start_replicas(current, policy.period_seconds)
        if policy.type is PolicyType.PODS:
            proposed.append(start + direction * policy.value)
        else:
            scaled = start * (1 + direction * policy.value / 100)
            proposed.append(math.ceil(scaled) if direction > 0 else math.floor(scaled))
    largest_change = max(proposed) if direction > 0 else min(proposed)
    smallest_change = min(proposed) if direction > 0 else max(proposed)
    return smallest_change if rules.select_policy is SelectPolicy.MIN else largest_change


def _tolerance(metric: float | None, direction: float | None, hpa: float) -> float:
    if metric is not None:
        return metric
    return hpa if direction is None else direction
