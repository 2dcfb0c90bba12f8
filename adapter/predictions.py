"""The prediction store: what the API serves, with expiry, and why something is missing.

Every configured target has one *slot* per served series (``predicted_replicas`` and
``predicted_<signal>``), labelled so that an HPA selects it with ``target=<name>``. A refresh
publishes new values (each with the time it expires) or the reason a target has none. The
request path only reads: `get_values` answers from the current table, and turns a slot
without a fresh value into `PredictionUnavailable` (503, the HPA holds its replicas) — never a
0, never a stale number past its expiry. A metric or namespace that is not configured at all
is `MetricNotFound` (404).

The table is rebuilt on publish and swapped whole; readers need no lock.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from adapter.api import MetricInfo, MetricValue
from adapter.config import AdapterConfig, ForecastTarget
from adapter.errors import MetricNotFound, PredictionUnavailable
from adapter.selectors import Selector
from adapter.store import LabelTable

Clock = Callable[[], float]
REPLICAS = "predicted_replicas"

TargetKey = tuple[str, str]
"""(namespace, target name)."""


@dataclasses.dataclass(frozen=True)
class Slot:
    target: TargetKey
    metric: str
    labels: Mapping[str, str]
    value: MetricValue | None = None
    expires_at: float = 0.0
    reason: str = "warming up: no prediction has been made yet"

    def stale_reason(self, now: float) -> str | None:
        """Why the slot has no fresh value at `now`; None when it has one."""
        if self.value is None or now >= self.expires_at:
            return self.reason or "the last prediction expired"
        return None


def slots_for(target: ForecastTarget) -> list[Slot]:
    key = (target.namespace, target.name)
    slots = [Slot(key, REPLICAS, target.labels)]
    for signal in target.traffic:
        slots.append(Slot(key, signal.served_metric, target.signal_labels(signal)))
    return slots


class PredictionStore:
    """Implements the provider seam (`adapter.ExternalMetricsProvider`) over predictions."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._slots: dict[tuple[TargetKey, str], Slot] = {}
        self._table: LabelTable[Slot] = LabelTable()
        self._by_target: dict[TargetKey, list[Slot]] = {}

    def configure(self, config: AdapterConfig) -> None:
        """Serve exactly the configured series; keep values of series that stay."""
        fresh: dict[tuple[TargetKey, str], Slot] = {}
        for target in config.targets:
            for slot in slots_for(target):
                old = self._slots.get((slot.target, slot.metric))
                if old is not None and old.labels == slot.labels:
                    slot = old
                fresh[slot.target, slot.metric] = slot
        self._slots = fresh
        self._rebuild()

    def publish(
        self,
        values: Iterable[tuple[TargetKey, str, MetricValue, float]],
        failures: Mapping[TargetKey, str],
    ) -> None:
        """Store new values ((target, metric, value, expires_at)) and reasons for failures.

        A failed target keeps its previous values until they expire; the reason is what a
        request will be told once they have.
        """
        for key, metric, value, expires_at in values:
            slot = self._slots.get((key, metric))
            if slot is not None:
                self._slots[key, metric] = dataclasses.replace(
                    slot, value=value, expires_at=expires_at, reason=""
                )
        if failures:
            self._slots = {
                key: dataclasses.replace(slot, reason=failures[key[0]])
                if key[0] in failures
                else slot
                for key, slot in self._slots.items()
            }
        self._rebuild()

    def list_metrics(self) -> Sequence[MetricInfo]:
        return self._table.metrics()

    def get_values(self, namespace: str, metric: str, selector: Selector) -> Sequence[MetricValue]:
        now = self._clock()
        slots = self._table.select(namespace, metric, selector)
        reasons = "; ".join(
            f"{slot.target[1]}: {why}" for slot in slots if (why := slot.stale_reason(now))
        )
        if reasons:
            raise PredictionUnavailable(
                f"no fresh prediction of {metric} in namespace {namespace} ({reasons})",
                retry_after=30,
            )
        return [slot.value for slot in slots if slot.value is not None]

    def target_values(self, namespace: str, name: str) -> dict[str, MetricValue]:
        """Every served value of one target, metric name -> value (predicted_replicas first,
        then the traffic signals in configured order)."""
        now = self._clock()
        slots = self._by_target.get((namespace, name))
        if not slots:
            raise MetricNotFound(f"no forecast target {name} in namespace {namespace}")
        reason = next((why for slot in slots if (why := slot.stale_reason(now))), None)
        if reason is not None:
            raise PredictionUnavailable(
                f"no fresh prediction for target {name} in namespace {namespace} ({reason})",
                retry_after=30,
            )
        return {slot.metric: slot.value for slot in slots if slot.value is not None}

    def ages(self) -> dict[tuple[TargetKey, str], float]:
        """Seconds since each held value was produced (nan when there is none)."""
        now = self._clock()
        return {
            key: now - slot.value.timestamp.timestamp() if slot.value is not None else math.nan
            for key, slot in self._slots.items()
        }

    def _rebuild(self) -> None:
        by_target: dict[TargetKey, list[Slot]] = {}
        for slot in self._slots.values():
            by_target.setdefault(slot.target, []).append(slot)
        self._table = LabelTable(
            (slot.target[0], slot.metric, slot) for slot in self._slots.values()
        )
        self._by_target = by_target
