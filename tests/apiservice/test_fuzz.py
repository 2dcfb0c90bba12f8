"""Arbitrary paths, query strings and selectors against the real server: only 2xx/4xx
answers (4xx always a Status), never a 5xx, never a dropped connection."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from apiservice.server import Server
from tests.harness import Client
from tests.pki import PKI

BASE = "/apis/external.metrics.k8s.io/v1beta1"
PREFIXES = [
    "",
    "/",
    "/apis",
    "/apis/",
    BASE,
    f"{BASE}/",
    f"{BASE}/namespaces/",
    f"{BASE}/namespaces/shop/",
    f"{BASE}/namespaces/shop/predicted_replicas",
    "/openapi/v3/",
    "/healthz",
    "/version",
]
TEXT_ROUTES = {"/healthz", "/livez", "/readyz", "/metrics"}

segments = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ["..", ".", "%2F", "%00", "%ff", "//", "predicted_replicas", "shop", "namespaces"]
    ),
)
query_values = st.one_of(
    st.text(max_size=40), st.sampled_from(["a=b", "a in (b", "!", "x>1", "=="])
)


@st.composite
def targets(draw: st.DrawFn) -> str:
    path = draw(st.sampled_from(PREFIXES))
    for segment in draw(st.lists(segments, max_size=3)):
        path += "/" + urllib.parse.quote(segment, safe="%")
    if not path.startswith("/"):
        path = "/" + path
    params = draw(
        st.lists(
            st.tuples(st.sampled_from(["labelSelector", "limit", "x", "pretty", ""]), query_values),
            max_size=3,
        )
    )
    if params:
        path += "?" + urllib.parse.urlencode(params)
    return path


@pytest.fixture
def admin(server: Server, pki: PKI) -> Iterator[Client]:
    with Client(server.port, pki.path("serving-ca"), pki.admin) as client:
        yield client


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(target=targets(), method=st.sampled_from(["GET", "GET", "GET", "POST", "DELETE", "PUT"]))
def test_any_request_gets_a_2xx_or_a_4xx_status(admin: Client, target: str, method: str) -> None:
    answer = admin.get(target, method=method)
    assert 200 <= answer.status < 500, (target, answer.status, answer.body[:300])
    if urllib.parse.urlsplit(target).path in TEXT_ROUTES and answer.status == 200:
        return
    assert answer.headers["Content-Type"].startswith("application/json"), target
    body = json.loads(answer.body)
    if answer.status >= 400:
        assert body["kind"] == "Status"
        assert body["code"] == answer.status
        assert body["message"]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(selector=st.text(max_size=60))
def test_any_selector_gets_200_404_or_400(admin: Client, selector: str) -> None:
    query = urllib.parse.urlencode({"labelSelector": selector})
    answer = admin.get(f"{BASE}/namespaces/shop/predicted_replicas?{query}")
    assert answer.status in (200, 400, 404), (selector, answer.body)
    body = json.loads(answer.body)
    if answer.status == 200:
        assert body["items"]
    else:
        assert body["reason"] in ("BadRequest", "NotFound")
