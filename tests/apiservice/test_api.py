"""The API as the aggregator, the HPA and kubectl see it: paths, documents, Status errors.

Every request goes over TLS to a real server; the identity is the front proxy forwarding
system:masters (as the aggregator's own checks do) unless a test says otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from apiservice.server import Server
from tests.harness import Client
from tests.pki import PKI

BASE = "/apis/external.metrics.k8s.io/v1beta1"
MASTERS = {"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"}


@pytest.fixture
def aggregator(server: Server, pki: PKI) -> Iterator[Client]:
    client = Client(server.port, pki.path("serving-ca"), pki.front_proxy)
    yield client
    client.close()


def get(client: Client, path: str, **headers: str) -> tuple[int, dict]:
    answer = client.get(path, {**MASTERS, **headers})
    assert answer.headers["Content-Type"].split(";")[0] == "application/json", answer.body
    return answer.status, answer.json()


ROUTES = [
    # (path, status, number of items or a key the body must have)
    (f"{BASE}/namespaces/shop/predicted_replicas", 200, 2),
    (f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=target%3Dweb", 200, 1),
    (
        f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=target+in+%28web%2Cworker%29",
        200,
        2,
    ),
    (f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=target%21%3Dweb", 200, 1),
    (f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=tier", 200, 1),
    (f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=%21tier", 200, 1),
    (f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=target+notin+%28web%29", 200, 1),
    (f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=", 200, 2),
    (
        f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=target%3Dweb&limit=5&pretty=true",
        200,
        1,
    ),
    (f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=target%3Dnone", 404, "NotFound"),
    (f"{BASE}/namespaces/other/predicted_replicas", 404, "NotFound"),
    (f"{BASE}/namespaces/shop/unknown_metric", 404, "NotFound"),
    (f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=target%3D%3D%3D", 400, "BadRequest"),
    (f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=Bad%2FKey%3Dv", 400, "BadRequest"),
    (f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=a+in+b", 400, "BadRequest"),
    (f"{BASE}/namespaces/shop", 404, "NotFound"),
    (f"{BASE}/namespaces/shop/predicted_replicas/name", 404, "NotFound"),
    (f"{BASE}/predicted_replicas", 404, "NotFound"),
    ("/api/v1/pods", 404, "NotFound"),
    ("/openapi/v3/apis", 404, "NotFound"),
    ("/openapi/v3/apis/custom.metrics.k8s.io/v1beta1", 404, "NotFound"),
    ("/openapi/v3/apis/external.metrics.k8s.io/v1beta2", 404, "NotFound"),
]


@pytest.mark.parametrize(
    ("path", "status", "expect"), ROUTES, ids=[r[0].removeprefix(BASE) or "/" for r in ROUTES]
)
def test_route_table(aggregator: Client, path: str, status: int, expect: int | str) -> None:
    code, body = get(aggregator, path)
    assert code == status, body
    if isinstance(expect, int):
        assert body["kind"] == "ExternalMetricValueList"
        assert len(body["items"]) == expect
    else:
        assert body["kind"] == "Status"
        assert body["apiVersion"] == "v1"
        assert body["status"] == "Failure"
        assert body["reason"] == expect
        assert body["code"] == status


def test_metric_list_is_what_the_hpa_decodes(aggregator: Client) -> None:
    code, body = get(
        aggregator, f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=target%3Dweb"
    )
    assert code == 200
    assert body["apiVersion"] == "external.metrics.k8s.io/v1beta1"
    assert body["metadata"] == {}
    (item,) = body["items"]
    assert list(item) == ["metricName", "metricLabels", "timestamp", "window", "value"]
    assert item["metricName"] == "predicted_replicas"
    assert item["metricLabels"] == {"target": "web", "tier": "api"}
    assert item["value"] == "7"
    assert item["window"] == 600
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", item["timestamp"])


def test_quantities_are_canonical_and_items_without_window_omit_it(aggregator: Client) -> None:
    _, body = get(
        aggregator, f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=target%3Dworker"
    )
    assert body["items"][0]["value"] == "2500m"
    assert "window" not in body["items"][0]
    _, body = get(aggregator, f"{BASE}/namespaces/shop/predicted_requests_rate")
    assert body["items"][0]["value"] == "1234568m"


def test_bad_selector_message_says_what_is_wrong(aggregator: Client) -> None:
    _, body = get(aggregator, f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=a+in+b")
    assert (
        body["message"]
        == "invalid labelSelector: unable to parse requirement: found 'b' expected: '('"
    )


def test_resource_list_advertises_metrics_for_get_only(aggregator: Client) -> None:
    code, body = get(aggregator, BASE)
    assert code == 200
    assert body["kind"] == "APIResourceList"
    assert body["groupVersion"] == "external.metrics.k8s.io/v1beta1"
    assert [r["name"] for r in body["resources"]] == [
        "predicted_replicas",
        "predicted_requests_rate",
    ]
    for resource in body["resources"]:
        assert resource == {
            "name": resource["name"],
            "singularName": "",
            "namespaced": True,
            "kind": "ExternalMetricValueList",
            "verbs": ["get"],
        }


def test_group_and_group_list(aggregator: Client) -> None:
    version = {"groupVersion": "external.metrics.k8s.io/v1beta1", "version": "v1beta1"}
    code, body = get(aggregator, "/apis/external.metrics.k8s.io")
    assert code == 200
    assert body == {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": "external.metrics.k8s.io",
        "versions": [version],
        "preferredVersion": version,
    }
    code, body = get(aggregator, "/apis", Accept="application/json, */*")
    assert code == 200
    assert body["kind"] == "APIGroupList"
    assert body["groups"][0]["preferredVersion"] == version


AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"


@pytest.mark.parametrize(
    ("accept", "version"),
    [
        (AGGREGATED_V2, "v2"),
        (f"{AGGREGATED_V2},{AGGREGATED_V2BETA1}", "v2"),
        (AGGREGATED_V2BETA1, "v2beta1"),
        (f"{AGGREGATED_V2BETA1};q=0.5,{AGGREGATED_V2}", "v2"),
    ],
)
def test_apis_serves_aggregated_discovery_when_asked(
    aggregator: Client, accept: str, version: str
) -> None:
    answer = aggregator.get("/apis", {**MASTERS, "Accept": accept})
    assert answer.status == 200
    content_type = answer.headers["Content-Type"]
    params = dict(p.split("=") for p in content_type.split(";")[1:])
    assert params == {"g": "apidiscovery.k8s.io", "v": version, "as": "APIGroupDiscoveryList"}
    body = answer.json()
    assert body["apiVersion"] == f"apidiscovery.k8s.io/{version}"
    (group,) = body["items"]
    assert group["metadata"]["name"] == "external.metrics.k8s.io"
    (ver,) = group["versions"]
    assert ver["version"] == "v1beta1"
    assert ver["freshness"] == "Current"
    assert {r["resource"] for r in ver["resources"]} == {
        "predicted_replicas",
        "predicted_requests_rate",
    }
    assert all(r["scope"] == "Namespaced" and r["verbs"] == ["get"] for r in ver["resources"])
    # The aggregator revalidates with If-None-Match every minute.
    again = aggregator.get(
        "/apis", {**MASTERS, "Accept": accept, "If-None-Match": answer.headers["ETag"]}
    )
    assert again.status == 304


def test_apis_answers_406_for_aggregated_types_it_does_not_serve(aggregator: Client) -> None:
    """A 406 makes every aggregator version fall back to legacy discovery."""
    code, body = get(
        aggregator,
        "/apis",
        Accept="application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList",
    )
    assert code == 406
    assert body["reason"] == "NotAcceptable"


def test_protobuf_only_clients_get_406_and_the_hpa_accept_header_gets_json(
    aggregator: Client,
) -> None:
    code, _ = get(
        aggregator,
        f"{BASE}/namespaces/shop/predicted_replicas",
        Accept="application/vnd.kubernetes.protobuf",
    )
    assert code == 406
    code, body = get(
        aggregator,
        f"{BASE}/namespaces/shop/predicted_replicas",
        Accept="application/vnd.kubernetes.protobuf, */*",
    )
    assert code == 200
    assert body["kind"] == "ExternalMetricValueList"


def test_wrong_method_is_405_status(aggregator: Client) -> None:
    answer = aggregator.get(f"{BASE}/namespaces/shop/predicted_replicas", MASTERS, method="DELETE")
    assert answer.status == 405
    assert answer.json()["reason"] == "MethodNotAllowed"
    assert "GET" in answer.headers["Allow"]


def test_version(aggregator: Client) -> None:
    code, body = get(aggregator, "/version")
    assert code == 200
    assert body["gitVersion"].startswith("v")
    assert set(body) >= {"major", "minor", "gitVersion", "platform"}


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz", "/readyz?verbose"])
def test_health_needs_no_credentials(server: Server, pki: PKI, path: str) -> None:
    with Client(server.port, pki.path("serving-ca")) as client:
        answer = client.get(path)
    assert answer.status == 200
    assert answer.body.startswith(b"ok") or b"check passed" in answer.body


def test_prometheus_metrics_count_requests_by_route(aggregator: Client) -> None:
    get(aggregator, f"{BASE}/namespaces/shop/predicted_replicas")
    get(aggregator, f"{BASE}/namespaces/shop/unknown_metric")
    answer = aggregator.get("/metrics", MASTERS)
    assert answer.status == 200
    text = answer.body.decode()
    route = "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}"
    counter = "predictive_metrics_adapter_http_requests_total"
    assert f'{counter}{{code="200",method="GET",route="{route}"}} 1.0' in text
    assert f'{counter}{{code="404",method="GET",route="{route}"}} 1.0' in text
    assert (
        'predictive_metrics_adapter_authentication_total{method="front-proxy",result="success"}'
        in text
    )
    assert (
        'predictive_metrics_adapter_authorization_total{decision="allowed",source="always-allow"}'
        in text
    )
    assert "predictive_metrics_adapter_served_value_age_seconds_count 2.0" in text
    assert "predictive_metrics_adapter_serving_certificate_expiry_timestamp_seconds" in text
