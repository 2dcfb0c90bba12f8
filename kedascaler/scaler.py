"""KEDA's ways in, over the same predictions the APIService serves.

Where KEDA owns the cluster's `v1beta1.external.metrics.k8s.io`, this adapter cannot register
its own APIService; KEDA then reads the predictions through one of its own scalers:

- **external / external-push** (gRPC, KEDA's ``externalscaler.ExternalScaler``): this module
  serves it on its own port (``--keda-grpc-port``), with TLS from the serving certificate
  (following its rotation) and, with ``--keda-grpc-client-ca-file``, client certificates
  required;
- **metrics-api** (HTTPS JSON): ``GET /predictions/v1/namespaces/{ns}/targets/{target}`` on the
  main listener, authenticated and authorized like the metric endpoint
  (`apiservice.handlers.target_prediction`).

gRPC is an optional extra (``keda``): only this module imports it, and only when the gRPC port
is configured is this module imported.

Trigger metadata (the ScaledObject trigger's ``metadata``; other keys such as ``scalerAddress``
are ignored): ``target`` (the forecast target, required; looked up in the ScaledObject's
namespace), ``prediction`` (``replicas``, the default, or ``load``), ``signal`` (which traffic
signal for ``load``; the first by default), ``targetValue`` (what one pod handles, required for
``load``; for ``replicas`` the target size is 1, so KEDA's HPA asks for exactly the predicted
replicas), ``activationThreshold`` (``IsActive`` is true while the predicted load at now +
lead time is above it; 0 by default).

An unknown target is NOT_FOUND, a target without a fresh prediction UNAVAILABLE, bad metadata
INVALID_ARGUMENT: KEDA then applies its ``fallback``, never a 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import grpc

import adapter
from certs.serving import ServingContext, ServingMaterial
from kedascaler.externalscaler import externalscaler_pb2 as pb, externalscaler_pb2_grpc as rpc

logger = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
STREAM_POLL_SECONDS = 1.0
"""How often a StreamIsActive stream re-checks the prediction (it sends only on a change)."""


@dataclasses.dataclass(frozen=True)
class Query:
    """What one trigger asks for."""

    namespace: str
    target: str
    load: bool
    signal: str | None
    target_value: float
    activation_threshold: float

    @classmethod
    def from_ref(cls, ref: pb.ScaledObjectRef) -> Query:
        """Parse trigger metadata; `ValueError` names what is wrong."""
        metadata = dict(ref.scalerMetadata)
        target = metadata.get("target", "").strip()
        if not target:
            raise ValueError("metadata.target (the forecast target's name) is required")
        if not ref.namespace:
            raise ValueError("the ScaledObject's namespace is missing")
        kind = metadata.get("prediction", "replicas").strip()
        if kind not in ("replicas", "load"):
            raise ValueError(f"metadata.prediction must be 'replicas' or 'load', not {kind!r}")
        load = kind == "load"
        target_value = 1.0
        if load:
            target_value = _number(metadata, "targetValue", None)
            if not target_value > 0:
                raise ValueError("metadata.targetValue (load one pod handles) must be > 0")
        threshold = _number(metadata, "activationThreshold", 0.0)
        signal = metadata.get("signal") or None
        return cls(ref.namespace, target, load, signal, target_value, threshold)

    def metric_name(self, values: Mapping[str, adapter.MetricValue]) -> str:
        if not self.load:
            return adapter.REPLICAS
        return self._signal_metric(values)

    def _signal_metric(self, values: Mapping[str, adapter.MetricValue]) -> str:
        signals = [name for name in values if name != adapter.REPLICAS]
        if self.signal is None:
            return signals[0]
        wanted = f"predicted_{self.signal}"
        if wanted not in values:
            raise ValueError(
                f"target {self.target} has no signal {self.signal!r} "
                f"(it has {', '.join(s.removeprefix('predicted_') for s in signals)})"
            )
        return wanted

    def active(self, values: Mapping[str, adapter.MetricValue]) -> bool:
        return float(values[self._signal_metric(values)].value) > self.activation_threshold


def _number(metadata: Mapping[str, str], key: str, default: float | None) -> float:
    text = metadata.get(key)
    if text is None or not text.strip():
        if default is None:
            raise ValueError(f"metadata.{key} is required")
        return default
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"metadata.{key} must be a number, not {text!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"metadata.{key} must be finite")
    return number


class ExternalScaler(rpc.ExternalScalerServicer):
    """KEDA's external scaler over the prediction store."""

    def __init__(self, predictions: adapter.TargetPredictions) -> None:
        self._predictions = predictions

    async def IsActive(self, request: pb.ScaledObjectRef, context: Context) -> pb.IsActiveResponse:
        query, values, _ = await self._read(request, context)
        return pb.IsActiveResponse(result=query.active(values))

    async def StreamIsActive(
        self, request: pb.ScaledObjectRef, context: Context
    ) -> AsyncIterator[pb.IsActiveResponse]:
        query, values, _ = await self._read(request, context)
        sent = query.active(values)
        yield pb.IsActiveResponse(result=sent)
        while True:
            await asyncio.sleep(STREAM_POLL_SECONDS)
            active = query.active(await self._values(query, context))
            if active != sent:
                sent = active
                yield pb.IsActiveResponse(result=active)

    async def GetMetricSpec(
        self, request: pb.ScaledObjectRef, context: Context
    ) -> pb.GetMetricSpecResponse:
        query, _, metric = await self._read(request, context)
        spec = pb.MetricSpec(
            metricName=metric,
            targetSize=max(1, round(query.target_value)),
            targetSizeFloat=query.target_value,
        )
        return pb.GetMetricSpecResponse(metricSpecs=[spec])

    async def GetMetrics(
        self, request: pb.GetMetricsRequest, context: Context
    ) -> pb.GetMetricsResponse:
        _, values, metric = await self._read(request.scaledObjectRef, context)
        value = float(values[metric].value)
        answer = pb.MetricValue(
            metricName=request.metricName or metric,
            metricValue=math.ceil(value),
            metricValueFloat=value,
        )
        return pb.GetMetricsResponse(metricValues=[answer])

    async def _read(
        self, ref: pb.ScaledObjectRef, context: Context
    ) -> tuple[Query, Mapping[str, adapter.MetricValue], str]:
        """The trigger's query, its target's current values and the metric it asks for."""
        try:
            query = Query.from_ref(ref)
        except ValueError as exc:
            await _abort(context, exc)
        values = await self._values(query, context)
        try:
            metric = query.metric_name(values)  # an unknown signal is bad metadata
        except ValueError as exc:
            await _abort(context, exc)
        return query, values, metric

    async def _values(self, query: Query, context: Context) -> Mapping[str, adapter.MetricValue]:
        try:
            return self._predictions.target_values(query.namespace, query.target)
        except (adapter.MetricNotFound, adapter.PredictionUnavailable) as exc:
            await _abort(context, exc)


async def _abort(context: Context, exc: Exception) -> NoReturn:
    if isinstance(exc, adapter.MetricNotFound):
        code = grpc.StatusCode.NOT_FOUND
    elif isinstance(exc, adapter.PredictionUnavailable):
        code = grpc.StatusCode.UNAVAILABLE
    else:
        code = grpc.StatusCode.INVALID_ARGUMENT
    await context.abort(code, str(exc))
    raise AssertionError("abort raises")  # for the type checker: abort never returns


@dataclasses.dataclass(frozen=True)
class GrpcTLS:
    serving: ServingContext
    """The HTTPS listener's certificate, which gRPC follows through rotation."""
    client_ca_file: Path | None


def credentials(tls: GrpcTLS) -> grpc.ServerCredentials:
    """Server credentials that adopt a rotated serving certificate on the next connection once
    the HTTPS listener has validated and adopted it (a half-written pair never reaches gRPC)."""
    seen: list[tuple[ServingMaterial, bytes | None]] = []

    def current() -> grpc.ServerCertificateConfiguration | None:
        material = tls.serving.material
        client_cas = tls.client_ca_file.read_bytes() if tls.client_ca_file else None
        if seen and seen[0][0] is material and seen[0][1] == client_cas:
            return None  # unchanged
        seen[:] = [(material, client_cas)]
        return grpc.ssl_server_certificate_configuration(
            [(material.key_pem, material.cert_pem)], client_cas
        )

    initial = current()
    assert initial is not None
    return grpc.dynamic_ssl_server_credentials(
        initial,
        current,  # type: ignore[arg-type]  # grpc's fetcher may return None: "unchanged"
        require_client_authentication=tls.client_ca_file is not None,
    )


async def start_grpc(
    predictions: adapter.TargetPredictions, address: str, tls: GrpcTLS | None
) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    rpc.add_ExternalScalerServicer_to_server(ExternalScaler(predictions), server)  # type: ignore[no-untyped-call]
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, await asyncio.to_thread(credentials, tls))
    await server.start()
    return server, port
