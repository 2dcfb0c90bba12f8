"""Kapacity's result ConfigMap: the replicas planned from every forecast step.

For a target with ``resultConfigMap: true``, each refresh that publishes also writes
``<target>-result`` in the target's namespace in the format Kapacity's predictive
portrait reads: ``type: TimeSeries``, ``expireTime`` (RFC 3339, UTC) and ``timeSeries``, a
JSON object of unix timestamp -> replica count. A capacity target's ConfigMap also says how
its count is sized (`sizing_fields`: the setting, whether the bound is calibrated, and with an
objective the tuned figures, whether it was met and why; Kapacity ignores keys it does not
know). The write goes through a `ResultWriter`
(implemented where the Kubernetes client lives); the sink is optional, so a failed write is
logged and never fails the target or the refresh.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from adapter.config import ForecastTarget
from adapter.state import SizingStatus

logger = logging.getLogger(__name__)


class ResultWriter(Protocol):
    """Writes Kapacity's result ConfigMap (implemented where the Kubernetes client lives)."""

    async def write(self, namespace: str, name: str, data: Mapping[str, str]) -> None: ...


def result_data(
    per_step: Sequence[tuple[int, int]], expires_at: float, sizing: SizingStatus | None = None
) -> dict[str, str]:
    """The ConfigMap's data for (timestamp, replicas) steps that expire at `expires_at`, and
    the sizing of a capacity target."""
    expires = datetime.datetime.fromtimestamp(expires_at, datetime.UTC)
    series = {str(stamp): count for stamp, count in per_step}
    return {
        "type": "TimeSeries",
        "expireTime": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timeSeries": json.dumps(series, separators=(",", ":")),
        **(sizing_fields(sizing) if sizing is not None else {}),
    }


def sizing_fields(sizing: SizingStatus) -> dict[str, str]:
    """How a capacity target's count is sized, as ConfigMap fields (shares as fractions)."""
    reactive = sizing.reactive_utilisation
    fields = {
        "quantile": f"{sizing.quantile:g}",
        "forecastUtilisation": f"{sizing.forecast_utilisation:g}",
        "reactiveUtilisation": "none" if reactive is None else f"{reactive:g}",
        "boundCalibrated": _flag(sizing.calibrated),
        "bound": sizing.bound,
    }
    if sizing.objective is None:
        return fields
    fields["objectiveMaxTimeAboveCapacity"] = f"{sizing.objective:g}"
    if sizing.headroom:
        fields["objectiveHeadroom"] = f"{sizing.headroom:g}"
    fields["tuned"] = _flag(sizing.tuned)
    if sizing.met is not None:
        fields["objectiveMet"] = _flag(sizing.met)
        fields["expectedTimeAboveCapacity"] = f"{sizing.time_above_capacity:.6g}"
        fields["expectedCost"] = f"{sizing.cost:.6g}"
    fields["sizing"] = sizing.reason
    return fields


def _flag(value: bool) -> str:
    return "true" if value else "false"


async def write_result(
    writer: ResultWriter,
    target: ForecastTarget,
    per_step: Sequence[tuple[int, int]],
    expires_at: float,
    sizing: SizingStatus | None = None,
) -> None:
    try:
        await writer.write(
            target.namespace, f"{target.name}-result", result_data(per_step, expires_at, sizing)
        )
    except Exception as exc:
        logger.warning("cannot write %s/%s-result: %s", target.namespace, target.name, exc)
