"""Trust from ConfigMap kube-system/extension-apiserver-authentication, kept current without a
restart: a rotated front-proxy CA is trusted, a removed one distrusted, a failed refresh
changes nothing."""

from __future__ import annotations

import datetime
import http.client
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from apiservice.server import Server
from certs import issuing
from tests.fakes import FakeKube
from tests.harness import Client, settings_for
from tests.pki import FRONT_PROXY_NAME, PKI, Pair

METRIC = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/predicted_replicas"
MASTERS = {"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"}
REFRESH = 0.2


def published(pki: PKI, front_proxy_cas: list[Path], allowed: list[str]) -> dict[str, str]:
    """The ConfigMap as kube-apiserver writes it."""
    return {
        "client-ca-file": pki.path("client-ca").read_text(),
        "requestheader-client-ca-file": "".join(path.read_text() for path in front_proxy_cas),
        "requestheader-allowed-names": json.dumps(allowed),
        "requestheader-username-headers": '["X-Remote-User"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
    }


def status(
    server: Server, pki: PKI, identity: Pair, headers: dict[str, str] | None = None
) -> int | str:
    """The HTTP status, or 'refused' if the TLS layer drops the connection."""
    with Client(server.port, pki.path("serving-ca"), identity) as client:
        try:
            return client.get(METRIC, headers or MASTERS).status
        except (ssl.SSLError, http.client.RemoteDisconnected, ConnectionResetError):
            return "refused"


def eventually(check: Callable[[], object], expected: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (result := check()) != expected:
        assert time.monotonic() < deadline, f"still {result!r}, expected {expected!r}"
        time.sleep(REFRESH / 2)


@pytest.fixture
def second_ca(pki: PKI, tmp_path: Path) -> tuple[Path, Pair]:
    """A new front-proxy CA, as after a control-plane CA rotation, and its proxy certificate."""
    ca = issuing.new_ca("front-proxy-ca-2", valid_for=datetime.timedelta(days=1))
    ca_path = tmp_path / "front-proxy-ca-2.crt"
    ca_path.write_bytes(ca.cert_pem())
    proxy = pki.write(
        "front-proxy-2",
        issuing.issue_client(ca, FRONT_PROXY_NAME, valid_for=datetime.timedelta(days=1)),
    )
    return ca_path, proxy


@pytest.fixture
def looked_up(
    make_server: Callable[..., Server],
    pki: PKI,
    kubeconfig: Path,
    values_file: Path,
    fake_kube: FakeKube,
) -> Server:
    fake_kube.configmap = published(pki, [pki.path("front-proxy-ca")], [FRONT_PROXY_NAME])
    settings = settings_for(
        pki,
        kubeconfig,
        values_file,
        client_ca_file=None,
        requestheader_client_ca_file=None,
        requestheader_allowed_names=(),
        skip_lookup=False,
        refresh_interval=REFRESH,
    )
    return make_server(settings)


def test_trust_comes_from_the_configmap(looked_up: Server, pki: PKI, fake_kube: FakeKube) -> None:
    assert status(looked_up, pki, pki.front_proxy) == 200
    assert status(looked_up, pki, pki.admin, {}) == 200
    assert status(looked_up, pki, pki.rogue_proxy) == 401
    assert fake_kube.configmap_reads >= 1


def test_a_rotated_front_proxy_ca_is_trusted_and_the_old_one_dropped(
    looked_up: Server, pki: PKI, fake_kube: FakeKube, second_ca: tuple[Path, Pair]
) -> None:
    ca_path, new_proxy = second_ca
    assert status(looked_up, pki, new_proxy) == "refused"
    # Rotation, step 1: kube-apiserver publishes both CAs.
    fake_kube.configmap = published(pki, [pki.path("front-proxy-ca"), ca_path], [FRONT_PROXY_NAME])
    eventually(lambda: status(looked_up, pki, new_proxy), 200)
    assert status(looked_up, pki, pki.front_proxy) == 200
    # Step 2: the old CA is gone; certificates from it no longer get through.
    fake_kube.configmap = published(pki, [ca_path], [FRONT_PROXY_NAME])
    eventually(lambda: status(looked_up, pki, pki.front_proxy), "refused")
    assert status(looked_up, pki, new_proxy) == 200


def test_a_changed_allowed_name_takes_effect(
    looked_up: Server, pki: PKI, fake_kube: FakeKube
) -> None:
    fake_kube.configmap = published(pki, [pki.path("front-proxy-ca")], ["someone-else"])
    eventually(lambda: status(looked_up, pki, pki.front_proxy), 401)


def test_an_unreachable_api_keeps_the_last_good_trust(
    looked_up: Server, pki: PKI, fake_kube: FakeKube
) -> None:
    fake_kube.down = True
    failures = looked_up.instrumentation.reload_failures.labels("authentication-trust")
    eventually(lambda: failures._value.get() >= 2, True)
    assert status(looked_up, pki, pki.front_proxy) == 200
    fake_kube.down = False
    fake_kube.configmap = {
        "requestheader-allowed-names": "not json",
        "requestheader-client-ca-file": "junk",
    }
    before = failures._value.get()
    eventually(lambda: failures._value.get() > before + 1, True)
    assert status(looked_up, pki, pki.front_proxy) == 200
