"""Serving-certificate rotation under load: new handshakes get the new certificate, the
listener never drops, no request fails, and a half-written rotation is survived."""

from __future__ import annotations

import dataclasses
import datetime
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from apiservice.server import Server
from certs import files, issuing
from tests.harness import Client, settings_for
from tests.pki import NAMESPACE, PKI, SERVICE

METRIC = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/predicted_replicas"


def issuer(client: Client) -> str:
    return dict(item[0] for item in client.peer_certificate()["issuer"])["commonName"]


def test_rotation_under_load(
    make_server: Callable[..., Server], pki: PKI, tmp_path: Path, values_file: Path
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(pki.serving.cert, cert)
    shutil.copy(pki.serving.key, key)
    settings = settings_for(pki, None, values_file)
    serving = dataclasses.replace(
        settings.serving, tls_cert_file=cert, tls_private_key_file=key, tls_reload_interval=0.05
    )
    server = make_server(dataclasses.replace(settings, serving=serving))
    new_ca = issuing.new_ca("serving-ca-2", valid_for=datetime.timedelta(days=1))
    both_cas = tmp_path / "both-cas.crt"
    both_cas.write_bytes(pki.path("serving-ca").read_bytes() + new_ca.cert_pem())

    stop = threading.Event()
    failures: list[str] = []
    seen: list[list[str]] = [[] for _ in range(3)]

    def fresh_handshakes(log: list[str]) -> None:
        while not stop.is_set():
            with Client(server.port, both_cas, pki.admin) as client:
                try:
                    answer = client.get(METRIC)
                    log.append(issuer(client))
                    if answer.status != 200:
                        failures.append(f"status {answer.status}")
                except Exception as exc:  # any failure at all is what this test looks for
                    failures.append(repr(exc))

    keep_alive = Client(server.port, both_cas, pki.admin)
    assert keep_alive.get(METRIC).status == 200
    assert issuer(keep_alive) == "serving-ca"
    threads = [threading.Thread(target=fresh_handshakes, args=(log,)) for log in seen]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    names = ["localhost", "127.0.0.1", *issuing.service_dns_names(SERVICE, NAMESPACE)]
    # Key first, then certificate: for a moment the pair does not match, and the reload
    # must keep serving the old pair rather than fail.
    rotated = issuing.issue_serving(new_ca, names, valid_for=datetime.timedelta(days=1))
    files.write_pem(key, rotated.key_pem(), private=True)
    time.sleep(0.3)
    files.write_pem(cert, rotated.cert_pem(), private=False)
    deadline = time.monotonic() + 10
    while not all(log and log[-1] == "serving-ca-2" for log in seen):
        assert time.monotonic() < deadline, "the new certificate was never served"
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(10)

    assert failures == []
    for log in seen:
        switch = log.index("serving-ca-2")
        assert switch > 0, "requests before the rotation should have seen the old certificate"
        assert set(log[switch:]) == {"serving-ca-2"}, (
            "once rotated, every new handshake gets the new cert"
        )
    # The connection opened before the rotation keeps working on its old session.
    assert keep_alive.get(METRIC).status == 200
    keep_alive.close()
    assert server.instrumentation.reload_failures.labels("serving-certificate")._value.get() >= 1
    assert server.tls.material.not_after == rotated.certificate.not_valid_after_utc
    print(f"handshakes per client thread: {[len(log) for log in seen]}")
