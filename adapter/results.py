"""Kapacity's result ConfigMap: the replicas planned from every forecast step.

For a target with ``resultConfigMap: true``, each refresh that publishes also writes
``<target>-result`` in the target's namespace in the format Kapacity's predictive
portrait reads: ``type: TimeSeries``, ``expireTime`` (RFC 3339, UTC) and ``timeSeries``, a
JSON object of unix timestamp -> replica count. The write goes through a `ResultWriter`
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

logger = logging.getLogger(__name__)


class ResultWriter(Protocol):
    """Writes Kapacity's result ConfigMap (implemented where the Kubernetes client lives)."""

    async def write(self, namespace: str, name: str, data: Mapping[str, str]) -> None: ...


def result_data(per_step: Sequence[tuple[int, int]], expires_at: float) -> dict[str, str]:
    """The ConfigMap's data for (timestamp, replicas) steps that expire at `expires_at`."""
    expires = datetime.datetime.fromtimestamp(expires_at, datetime.UTC)
    series = {str(stamp): count for stamp, count in per_step}
    return {
        "type": "TimeSeries",
        "expireTime": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timeSeries": json.dumps(series, separators=(",", ":")),
    }


async def write_result(
    writer: ResultWriter,
    target: ForecastTarget,
    per_step: Sequence[tuple[int, int]],
    expires_at: float,
) -> None:
    try:
        await writer.write(
            target.namespace, f"{target.name}-result", result_data(per_step, expires_at)
        )
    except Exception as exc:
        logger.warning("cannot write %s/%s-result: %s", target.namespace, target.name, exc)
