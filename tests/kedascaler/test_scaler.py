"""KEDA's ways in: the gRPC external scaler (driven with a client generated from the .proto,
the way KEDA calls it) and the metrics-api JSON endpoint, over TLS; and the same prediction
through gRPC, metrics-api and the APIService at the same moment."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from apiservice.server import Server
from apiservice.settings import KedaSettings, ProviderSettings
from kedascaler.externalscaler import externalscaler_pb2 as pb, externalscaler_pb2_grpc as rpc
from tests.fakes import Clock, FakeHistorySource, FakeKube
from tests.harness import Client, LoopThread, settings_for
from tests.pki import PKI
from tests.samples import WEB_TARGET

NOW = 1_790_000_000.0
CONFIG = (
    WEB_TARGET
    + """- name: silent
  namespace: shop
  traffic: {name: requests, query: nothing}
  capacity: {perPod: 50}
  maxReplicas: 3
"""
)


@dataclasses.dataclass
class Running:
    server: Server
    stub: rpc.ExternalScalerStub
    source: FakeHistorySource
    clock: Clock


def load(t: np.ndarray) -> np.ndarray:
    return 200 + 150 * np.sin(2 * np.pi * t / 86400)


@pytest.fixture
def running(
    make_server: Callable[..., Server],
    pki: PKI,
    tmp_path: Path,
    kubeconfig: Path,
    fake_kube: FakeKube,
) -> Iterator[Running]:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    clock = Clock(NOW)
    source = FakeHistorySource(
        signals={"web_requests": load, "nothing": lambda t: np.full(len(t), np.nan)}, now=NOW
    )
    settings = settings_for(pki, kubeconfig, tmp_path / "unused.yaml")
    settings = dataclasses.replace(
        settings,
        provider=ProviderSettings(config_file=config, refresh_interval=300),
        keda=KedaSettings(
            grpc_port=0, grpc_bind_address="127.0.0.1", grpc_client_ca_file=pki.path("client-ca")
        ),
    )
    server = make_server(settings, source=source, clock=clock)
    assert server.refresher is not None
    began = time.monotonic()
    while server.refresher.last_report is None:
        assert time.monotonic() - began < 30
        time.sleep(0.05)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.path("serving-ca").read_bytes(),
        private_key=pki.admin.key.read_bytes(),
        certificate_chain=pki.admin.cert.read_bytes(),
    )
    with grpc.secure_channel(f"localhost:{server.grpc_port}", credentials) as channel:
        yield Running(server, rpc.ExternalScalerStub(channel), source, clock)


def ref(**metadata: str) -> pb.ScaledObjectRef:
    """What KEDA sends: the ScaledObject and its trigger's metadata (scalerAddress included)."""
    return pb.ScaledObjectRef(
        name="web-predictive",
        namespace="shop",
        scalerMetadata={
            "scalerAddress": "predictive-metrics-adapter.predictive-metrics.svc:9443",
            **metadata,
        },
    )


def replicas_via_api(running: Running, pki: PKI) -> int:
    with Client(running.server.port, pki.path("serving-ca"), pki.admin) as client:
        answer = client.get(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/predicted_replicas?labelSelector=target%3Dweb"
        )
    assert answer.status == 200
    return int(answer.json()["items"][0]["value"])


def test_replicas_spec_and_metrics_drive_keda_to_the_predicted_replicas(
    running: Running, pki: PKI
) -> None:
    (spec,) = running.stub.GetMetricSpec(ref(target="web")).metricSpecs
    assert (spec.metricName, spec.targetSizeFloat, spec.targetSize) == (
        "predicted_replicas",
        1.0,
        1,
    )
    (value,) = running.stub.GetMetrics(
        pb.GetMetricsRequest(scaledObjectRef=ref(target="web"), metricName="predicted_replicas")
    ).metricValues
    assert value.metricName == "predicted_replicas"
    assert value.metricValueFloat == replicas_via_api(running, pki)
    assert value.metricValue == int(value.metricValueFloat)


def test_load_spec_uses_the_per_pod_target(running: Running) -> None:
    request = ref(target="web", prediction="load", targetValue="50", signal="requests")
    (spec,) = running.stub.GetMetricSpec(request).metricSpecs
    assert (spec.metricName, spec.targetSizeFloat) == ("predicted_requests", 50.0)
    (value,) = running.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=request)).metricValues
    assert 40 < value.metricValueFloat < 400


def test_activity_follows_the_threshold(running: Running) -> None:
    assert running.stub.IsActive(ref(target="web", activationThreshold="10")).result is True
    assert running.stub.IsActive(ref(target="web", activationThreshold="100000")).result is False


def test_the_push_stream_sends_when_the_activity_changes(
    running: Running, loop_thread: LoopThread
) -> None:
    """The daily cycle crosses the threshold: the stream pushes the new activity by itself."""
    lead = 900
    now_load = float(load(np.array([NOW + lead]))[0])
    rising = now_load < 200  # below the cycle's mean now: wait for its peak, else its trough
    day = NOW - NOW % 86400
    crossing = day + (21600 if rising else 64800)  # 06:00 UTC peak, 18:00 UTC trough
    crossing += 86400 if crossing - lead <= NOW else 0
    stream = running.stub.StreamIsActive(ref(target="web", activationThreshold="200"))
    assert next(stream).result is not rising
    running.clock.now = running.source.now = crossing - lead
    assert running.server.refresher is not None
    loop_thread.run(running.server.refresher.refresh())
    assert next(stream).result is rising  # pushed, not polled by KEDA
    stream.cancel()


@pytest.mark.parametrize(
    ("metadata", "code", "words"),
    [
        ({"target": "nobody"}, grpc.StatusCode.NOT_FOUND, "no forecast target nobody"),
        (
            {"target": "silent"},
            grpc.StatusCode.UNAVAILABLE,
            "no fresh prediction for target silent",
        ),
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "metadata.target"),
        (
            {"target": "web", "prediction": "load"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "metadata.targetValue is required",
        ),
        (
            {"target": "web", "prediction": "load", "targetValue": "abc"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "must be a number",
        ),
        (
            {"target": "web", "prediction": "guess"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "'replicas' or 'load'",
        ),
        (
            {"target": "web", "prediction": "load", "targetValue": "5", "signal": "cpu"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "no signal 'cpu'",
        ),
    ],
)
def test_errors_are_grpc_statuses_never_a_zero(
    running: Running, metadata: dict[str, str], code: grpc.StatusCode, words: str
) -> None:
    for call in (
        lambda: running.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(**metadata))),
        lambda: running.stub.GetMetricSpec(ref(**metadata)),
        lambda: running.stub.IsActive(ref(**metadata)),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == code
        assert words in (caught.value.details() or "")


def test_grpc_without_a_client_certificate_is_refused(running: Running, pki: PKI) -> None:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.path("serving-ca").read_bytes()
    )
    address = f"localhost:{running.server.grpc_port}"
    with (
        grpc.secure_channel(address, credentials) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        rpc.ExternalScalerStub(channel).IsActive(ref(target="web"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def value_location(document: dict, location: str) -> object:
    """KEDA's metrics-api `valueLocation` for JSON (a GJSON path; dots between keys)."""
    for key in location.split("."):
        document = document[key]
    return document


def test_metrics_api_over_tls_with_keda_value_locations(
    running: Running, pki: PKI, fake_kube: FakeKube
) -> None:
    path = "/predictions/v1/namespaces/shop/targets/web"
    with Client(running.server.port, pki.path("serving-ca"), pki.admin) as client:
        answer = client.get(path)
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    body = answer.json()
    assert value_location(body, "predicted_replicas") == replicas_via_api(running, pki)
    assert float(value_location(body, "predicted_load.requests")) > 0  # type: ignore[arg-type]
    assert body["window"] == 900
    with Client(running.server.port, pki.path("serving-ca")) as anonymous:
        assert anonymous.get(path).status == 401
    with Client(running.server.port, pki.path("serving-ca"), pki.alice) as alice:
        denied = alice.get(path)
    assert denied.status == 403
    review = fake_kube.access_reviews[-1]
    assert review["resourceAttributes"]["verb"] == "get"
    assert review["resourceAttributes"]["resource"] == "predicted_replicas"
    assert review["resourceAttributes"]["namespace"] == "shop"
    with Client(running.server.port, pki.path("serving-ca"), pki.admin) as client:
        assert client.get("/predictions/v1/namespaces/shop/targets/silent").status == 503
        assert client.get("/predictions/v1/namespaces/shop/targets/nobody").status == 404


def test_grpc_metrics_api_and_apiservice_agree(running: Running, pki: PKI) -> None:
    (grpc_value,) = running.stub.GetMetrics(
        pb.GetMetricsRequest(scaledObjectRef=ref(target="web"))
    ).metricValues
    with Client(running.server.port, pki.path("serving-ca"), pki.admin) as client:
        metrics_api = json.loads(client.get("/predictions/v1/namespaces/shop/targets/web").body)[
            "predicted_replicas"
        ]
    assert grpc_value.metricValueFloat == metrics_api == replicas_via_api(running, pki)


def test_the_server_runs_without_the_grpc_extra() -> None:
    """gRPC is the optional `keda` extra: the server must import and serve without it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class NoGrpc:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'grpc' or name.startswith('grpc.'):\n"
        "            raise ImportError('grpc is not installed')\n"
        "sys.meta_path.insert(0, NoGrpc())\n"
        "import apiservice.server, apiservice.__main__\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr
