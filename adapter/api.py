"""The seam between the API surface and the domain: what a metrics provider offers.

`apiservice` knows the adapter only through this module (re-exported by `adapter/__init__.py`).
A provider answers two questions, both from memory and without I/O, because they are asked on
the request path of every HPA sync:

- `list_metrics()`: the metric names to advertise in discovery. It must not raise: discovery
  that fails makes the whole API group stale and blocks namespace deletion cluster-wide.
- `get_values(namespace, metric, selector)`: the values of the series that match. It raises
  `MetricNotFound` or `PredictionUnavailable` rather than returning nothing, and it never
  returns a made-up value (least of all a 0) for a series it has no data for.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Protocol

from adapter.selectors import Selector

MAX_VALUE = Decimal(2**63 - 1) / 1000
"""The largest value an HPA can be given, 9,223,372,036,854,775.807: it reads a quantity as
a signed 64-bit count of thousandths (``Quantity.MilliValue()``), and the API surface refuses
to write more. The domain keeps every value it serves within it."""

_MAX_FLOAT = float(MAX_VALUE)
"""The first float past `MAX_VALUE` (it rounds up): a float is servable only below it."""


def value_problem(number: float) -> str:
    """Why `number` cannot be served as a load, a usage or a replica count ('' if it can).

    NaN is not judged here: in PromQL it means "no value" (0/0), and a history keeps it as a
    gap.
    """
    if math.isinf(number):
        return f"{number} is not a finite number"
    if number < 0:
        return f"{number:.6g} is negative, which no load, usage or replica count can be"
    if number >= _MAX_FLOAT:
        return (
            f"{number:.6g} is beyond {_MAX_FLOAT:.3g}, the most the HPA's 64-bit milli-value holds"
        )
    return ""


@dataclasses.dataclass(frozen=True, slots=True)
class MetricInfo:
    """A metric the provider can serve (in some namespaces, for some label sets)."""

    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class MetricValue:
    """One series' value: labels identify the series, the HPA sums the values it receives.

    `value` is finite and non-negative (checked here, so that no provider can hand the HPA a
    NaN or a negative load). `window` is how many seconds the value covers, e.g. the horizon
    a prediction was taken over.
    """

    labels: Mapping[str, str]
    value: Decimal
    timestamp: datetime.datetime
    window: int | None = None

    def __post_init__(self) -> None:
        if not self.value.is_finite():
            raise ValueError(f"metric value must be finite, got {self.value}")
        if self.value < 0:
            raise ValueError(f"metric value must not be negative, got {self.value}")
        if self.timestamp.tzinfo is None:
            raise ValueError("metric timestamp must carry a time zone")

    @staticmethod
    def decimal(number: float | int | str | Decimal) -> Decimal:
        """The exact decimal a float was written as (1.1 -> Decimal('1.1'), not 1.1000000…)."""
        if isinstance(number, float):
            if not math.isfinite(number):
                raise ValueError(f"metric value must be finite, got {number}")
            return Decimal(repr(number))
        return Decimal(number)


class ExternalMetricsProvider(Protocol):
    """What the API surface needs from the domain."""

    def list_metrics(self) -> Sequence[MetricInfo]:
        """The metrics to advertise; from memory, never raises."""
        ...

    def get_values(self, namespace: str, metric: str, selector: Selector) -> Sequence[MetricValue]:
        """The values of the matching series; raises instead of returning an empty list."""
        ...


class TargetPredictions(Protocol):
    """Predictions by forecast target, for KEDA's scalers (the API surface's second reader)."""

    def target_values(self, namespace: str, name: str) -> Mapping[str, MetricValue]:
        """Metric name -> value of one target; raises `MetricNotFound` (no such target) or
        `PredictionUnavailable` (no fresh prediction), never returns a made-up value."""
        ...
