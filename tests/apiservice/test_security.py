"""The security matrix: every way in, and the exact answer each gets. Zero bypasses.

The server trusts, from flags: the client CA (users' own certificates), the front-proxy CA
(only CN front-proxy-client), and a fake Kubernetes API for TokenReview and SubjectAccessReview.
"""

from __future__ import annotations

import http.client
import ssl

import pytest

from apiservice.server import Server
from tests.fakes import FakeKube
from tests.harness import Client
from tests.pki import PKI, Pair

METRIC = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/predicted_replicas"
HPA = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
HPA_HEADERS = {
    "X-Remote-User": HPA,
    "X-Remote-Group": "system:serviceaccounts",
}
ESCALATION = {"X-Remote-User": "admin", "X-Remote-Group": "system:masters"}


def call(
    server: Server, pki: PKI, identity: Pair | None, path: str = METRIC, **headers: str
) -> tuple[int, dict]:
    with Client(server.port, pki.path("serving-ca"), identity) as client:
        answer = client.get(path, headers)
    return answer.status, answer.json()


def assert_refused_at_handshake(server: Server, pki: PKI, identity: Pair) -> None:
    """The TLS layer drops the connection: no HTTP answer at all, and nothing reaches the
    application (OpenSSL rejects a presented certificate that does not verify)."""
    before = server.instrumentation.requests._metrics.copy()
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        with Client(server.port, pki.path("serving-ca"), identity) as client:
            client.context.maximum_version = version
            with pytest.raises(
                (ssl.SSLError, http.client.RemoteDisconnected, ConnectionResetError)
            ):
                client.get(METRIC, ESCALATION)
    assert server.instrumentation.requests._metrics == before


def test_no_credentials_is_401(server: Server, pki: PKI, fake_kube: FakeKube) -> None:
    code, body = call(server, pki, None)
    assert (code, body["reason"], body["message"]) == (401, "Unauthorized", "Unauthorized")
    assert fake_kube.access_reviews == []


@pytest.mark.parametrize("path", ["/apis", "/version", "/metrics", "/no/such/path", METRIC + "/x"])
def test_anonymous_learns_nothing_about_any_path(server: Server, pki: PKI, path: str) -> None:
    code, _ = call(server, pki, None, path)
    assert code == 401


def test_identity_headers_without_a_certificate_are_ignored(server: Server, pki: PKI) -> None:
    code, _ = call(server, pki, None, **ESCALATION)
    assert code == 401


def test_certificate_from_an_unknown_ca_is_refused_at_the_handshake(
    server: Server, pki: PKI
) -> None:
    assert_refused_at_handshake(server, pki, pki.stranger)


def test_expired_certificate_is_refused_at_the_handshake(server: Server, pki: PKI) -> None:
    assert_refused_at_handshake(server, pki, pki.expired)


def test_trusted_certificate_passes_the_same_handshakes(server: Server, pki: PKI) -> None:
    """The control for the two tests above: same client, good certificate."""
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        with Client(server.port, pki.path("serving-ca"), pki.admin) as client:
            client.context.maximum_version = version
            assert client.get(METRIC).status == 200


def test_front_proxy_certificate_with_a_name_not_allowed_is_not_trusted(
    server: Server, pki: PKI, fake_kube: FakeKube
) -> None:
    code, body = call(server, pki, pki.rogue_proxy, **ESCALATION)
    assert (code, body["reason"]) == (401, "Unauthorized")
    assert fake_kube.access_reviews == []


def test_identity_headers_from_a_user_certificate_are_ignored(
    server: Server, pki: PKI, fake_kube: FakeKube
) -> None:
    code, body = call(server, pki, pki.alice, **ESCALATION)
    assert code == 403
    assert body["message"] == (
        "predicted_replicas.external.metrics.k8s.io is forbidden: "
        'User "alice" cannot list resource "predicted_replicas" '
        'in API group "external.metrics.k8s.io" in the namespace "shop": no RBAC rule allows it'
    )
    assert body["details"] == {"group": "external.metrics.k8s.io", "kind": "predicted_replicas"}
    (review,) = fake_kube.access_reviews
    assert review["user"] == "alice"
    assert review["groups"] == ["developers", "system:authenticated"]


def test_user_certificate_is_served_as_its_own_user_when_allowed(
    server: Server, pki: PKI, fake_kube: FakeKube
) -> None:
    fake_kube.allow.add(("alice", "list", "predicted_replicas"))
    code, body = call(server, pki, pki.alice, **ESCALATION)
    assert code == 200
    assert len(body["items"]) == 2
    assert [review["user"] for review in fake_kube.access_reviews] == ["alice"]


def test_front_proxy_user_denied_by_subject_access_review_is_403(
    server: Server, pki: PKI, fake_kube: FakeKube
) -> None:
    code, body = call(server, pki, pki.front_proxy, **HPA_HEADERS)
    assert code == 403
    assert body["reason"] == "Forbidden"
    assert f'User "{HPA}" cannot list resource "predicted_replicas"' in body["message"]
    (review,) = fake_kube.access_reviews
    assert review["resourceAttributes"] == {
        "group": "external.metrics.k8s.io",
        "namespace": "shop",
        "resource": "predicted_replicas",
        "verb": "list",
        "version": "v1beta1",
    }
    assert review["groups"] == ["system:serviceaccounts", "system:authenticated"]


def test_front_proxy_user_allowed_by_subject_access_review_is_served_and_cached(
    server: Server, pki: PKI, fake_kube: FakeKube
) -> None:
    fake_kube.allow.add((HPA, "list", "predicted_replicas"))
    for _ in range(3):
        code, _ = call(server, pki, pki.front_proxy, **HPA_HEADERS)
        assert code == 200
    assert len(fake_kube.access_reviews) == 1


def test_front_proxy_forwards_groups_uid_and_extras_as_sent(
    server: Server, pki: PKI, fake_kube: FakeKube
) -> None:
    with Client(server.port, pki.path("serving-ca"), pki.front_proxy) as client:
        headers = [
            ("X-Remote-User", "bob"),
            ("X-Remote-Group", "a,b"),
            ("X-Remote-Group", "c"),
            ("X-Remote-Extra-Authentication.kubernetes.io%2fpod-name", "pod-1"),
            ("x-remote-extra-scopes", "one"),
            ("X-Remote-Extra-Scopes", "two"),
        ]
        connection = client.raw_connection()
        connection.putrequest("GET", METRIC)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        response.read()
        connection.close()
    assert response.status == 403
    (review,) = fake_kube.access_reviews
    assert review["user"] == "bob"
    assert review["groups"] == ["a,b", "c", "system:authenticated"]
    assert review["extra"] == {
        "authentication.kubernetes.io/pod-name": ["pod-1"],
        "scopes": ["one", "two"],
    }


def test_front_proxy_without_a_user_header_is_401(server: Server, pki: PKI) -> None:
    code, _ = call(server, pki, pki.front_proxy, **{"X-Remote-Group": "system:masters"})
    assert code == 401


def test_system_masters_needs_no_review(server: Server, pki: PKI, fake_kube: FakeKube) -> None:
    assert (
        call(
            server,
            pki,
            pki.front_proxy,
            **{"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"},
        )[0]
        == 200
    )
    assert call(server, pki, pki.admin)[0] == 200
    assert fake_kube.access_reviews == []


def test_aggregator_without_groups_reads_discovery_through_system_authenticated(
    server: Server, pki: PKI, fake_kube: FakeKube
) -> None:
    """Legacy discovery arrives as system:kube-aggregator with no groups; RBAC grants
    system:discovery to system:authenticated, which the server must add."""
    fake_kube.allow.add(
        ("group:system:authenticated", "get", "/apis/external.metrics.k8s.io/v1beta1")
    )
    code, body = call(
        server,
        pki,
        pki.front_proxy,
        "/apis/external.metrics.k8s.io/v1beta1",
        **{"X-Remote-User": "system:kube-aggregator"},
    )
    assert code == 200, body
    (review,) = fake_kube.access_reviews
    assert review["nonResourceAttributes"] == {
        "path": "/apis/external.metrics.k8s.io/v1beta1",
        "verb": "get",
    }


def test_valid_bearer_token_is_reviewed_once_and_authorized(
    server: Server, pki: PKI, fake_kube: FakeKube
) -> None:
    fake_kube.tokens["good-token"] = {
        "username": "carol",
        "groups": ["system:authenticated", "ops"],
    }
    fake_kube.allow.add(("group:ops", "list", "predicted_replicas"))
    for _ in range(3):
        code, _ = call(server, pki, None, Authorization="Bearer good-token")
        assert code == 200
    assert fake_kube.token_reviews == 1
    assert fake_kube.access_reviews[0]["groups"] == ["system:authenticated", "ops"]


@pytest.mark.parametrize(
    "header", ["Bearer wrong-token", "Bearer ", "Basic dXNlcjpwYXNz", "bearer"]
)
def test_invalid_or_malformed_credentials_are_401(
    server: Server, pki: PKI, fake_kube: FakeKube, header: str
) -> None:
    code, body = call(server, pki, None, Authorization=header)
    assert (code, body["reason"]) == (401, "Unauthorized")


def test_kubernetes_api_outage_fails_closed(server: Server, pki: PKI, fake_kube: FakeKube) -> None:
    fake_kube.tokens["good-token"] = {"username": "carol", "groups": ["ops"]}
    fake_kube.down = True
    # No answer is no access, and not a verdict on the token: 503, which clients retry.
    code, body = call(server, pki, None, Authorization="Bearer good-token")
    assert (code, body["reason"]) == (503, "ServiceUnavailable")
    code, body = call(server, pki, pki.front_proxy, **HPA_HEADERS)
    assert (code, body["reason"]) == (503, "ServiceUnavailable")
    assert body["message"] == (
        "the authorization check could not be made: the Kubernetes API did not answer; "
        "try again later"
    )


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz"])
def test_health_is_open_even_with_bad_credentials(server: Server, pki: PKI, path: str) -> None:
    with Client(server.port, pki.path("serving-ca")) as client:
        answer = client.get(path, {"Authorization": "Bearer wrong-token", **ESCALATION})
    assert (answer.status, answer.body) == (200, b"ok")


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/openapi/v2", "swagger"),
        ("/openapi/v3", "paths"),
        ("/openapi/v3/apis/external.metrics.k8s.io/v1beta1", "openapi"),
    ],
)
def test_openapi_is_served_without_credentials(
    server: Server, pki: PKI, path: str, key: str
) -> None:
    """The aggregator fetches these without groups; they describe the API, never its data."""
    code, body = call(server, pki, None, path, Authorization="Bearer wrong-token", **ESCALATION)
    assert code == 200
    assert key in body


def test_unknown_openapi_paths_are_404_without_credentials(server: Server, pki: PKI) -> None:
    code, body = call(server, pki, None, "/openapi/v3/apis")
    assert (code, body["reason"]) == (404, "NotFound")
